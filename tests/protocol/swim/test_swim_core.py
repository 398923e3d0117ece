"""Every SWIM/Lifeguard state transition of one core, driven by virtual time."""

from __future__ import annotations

import math
from typing import Any
import random

import pytest

from agentp2p.protocol.swim import (
    Ack,
    ConnectAhead,
    ConnectionClosed,
    ConnectionLost,
    ConnectionOpened,
    EventKind,
    Gossip,
    Leave,
    LeaveComplete,
    MemberDiscovered,
    MemberUpdate,
    Message,
    Nack,
    PeerId,
    Ping,
    PingReq,
    State,
    SwimConfig,
    SwimCore,
    Tick,
)
from agentp2p.protocol.swim.broadcast import BroadcastQueue
from agentp2p.protocol.swim.member import EVENT_FOR, RANK, supersedes
from agentp2p.protocol.swim.signature import signed_update
from agentp2p.protocol.swim.suspicion import Suspicion
from agentp2p.simulation.swim import sim_signer
from tests.protocol.swim.swimhelpers import deliver, events, make_core, next_tick, pid, run_until, sends

#: For tests of the round-robin itself: no probe turns go to the ring successor.
RR_ONLY = SwimConfig(gossip_interval=0, ring_probe_every=0)

OTHERS = ["b", "c", "d", "e"]


def first_probe(core):
    t, acts = next_tick(core)
    (ping,) = sends(acts, Ping)
    return t, ping


# ------------------------------------------------------------ tables


def test_precedence_is_a_total_order_per_member() -> None:
    states = list(State)
    for s1 in states:
        for s2 in states:
            for i in range(3):
                for j in range(3):
                    a, b = supersedes(s1, i, s2, j), supersedes(s2, j, s1, i)
                    assert not (a and b)
                    assert a or b or (s1 is s2 and i == j)
                    assert a == ((i, RANK[s1]) > (j, RANK[s2]))


def test_event_table_covers_every_transition() -> None:
    for old in [None, *State]:
        assert (old, State.ALIVE) in EVENT_FOR
    for old in State:
        for new in State:
            assert (old, new) in EVENT_FOR
    assert EVENT_FOR[(State.DEAD, State.ALIVE)] is EventKind.RECOVERED
    assert EVENT_FOR[(None, State.ALIVE)] is EventKind.JOINED


# ------------------------------------------------------------ probing


def test_direct_ack_keeps_member_alive_and_lowers_awareness() -> None:
    a = make_core("a", OTHERS)
    a.awareness.score = 2
    t, ping = first_probe(a)
    acts = deliver(a, t + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    assert a.awareness.score == 1
    _, acts = next_tick(a)  # closes the probe: no suspicion
    assert ("suspect", ping.to) not in events(acts)
    assert a.member(ping.to).state is State.ALIVE


def test_failed_probe_goes_indirect_then_suspect_then_dead() -> None:
    cfg = SwimConfig()
    a = make_core("a", OTHERS, config=cfg)
    t, ping = first_probe(a)
    target = ping.to
    acts = run_until(a, t + cfg.probe_timeout)
    reqs = sends(acts, PingReq)
    assert len(reqs) == cfg.indirect_checks
    assert {r.to for r in reqs}.isdisjoint({target, pid("a")})
    assert all(r.message.body.target == target and r.message.seq == ping.message.seq for r in reqs)
    assert 0 < reqs[0].message.body.timeout < cfg.probe_interval - cfg.probe_timeout
    assert len(sends(acts, Ping, to=target)) == 1  # the fallback direct ping
    # One helper could not reach it either (Nack); the others stayed silent.
    deliver(a, t + cfg.probe_timeout + 0.2, reqs[0].to, Message(ping.message.seq, 0, Nack()))
    t2, acts = next_tick(a)
    assert ("suspect", target) in events(acts)
    assert a.member(target).state is State.SUSPECT
    assert (a.stats.suspected, a.stats.suspected_nacked) == (1, 1)
    assert a.awareness.score == cfg.indirect_checks - 1  # one per silent helper: maybe we are slow
    # No confirmations: the full Lifeguard maximum applies.
    n = 5
    acts = run_until(a, t2 + cfg.suspicion_max(n) - 0.01)
    assert ("failed", target) not in events(acts)
    acts = run_until(a, t2 + cfg.suspicion_max(n) + 0.01)
    assert ("failed", target) in events(acts)
    assert a.member(target).state is State.DEAD
    assert a.stats.declared_dead == 1


def _helpers_of_failed_probes(core: SwimCore, probes: int) -> list[tuple[bytes, set[bytes]]]:
    """(target, the helpers asked) for each of ``probes`` failed probes (none answers)."""
    cfg = core.config
    out = []
    for _ in range(probes):
        t, acts = next_tick(core)
        (ping,) = [p for p in sends(acts, Ping) if p.why == "probe"]
        reqs = sends(run_until(core, t + cfg.probe_timeout), PingReq)
        assert len(reqs) == cfg.indirect_checks and all(r.to != ping.to for r in reqs)
        out.append((ping.to, {r.to for r in reqs}))
        # The member answers after all (late): it stays a member to draw.
        deliver(core, t + cfg.probe_timeout + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    return out


def test_helpers_are_drawn_among_the_members_whose_connections_we_held_longest() -> None:
    """A helper we are not connected to costs a dial before our PingReq
    leaves, and its late Nack raises our own score: helpers come from the
    connections held longest (not just any connection: a peer that opens
    many must not pick our helpers), once k of them can help."""
    cfg = SwimConfig(gossip_interval=0, ring_probe_every=0)
    others = [f"m{i:02d}" for i in range(40)]
    a = make_core("a", others, config=cfg)
    # Held longest first: 16 connections, the pool is the first max(8, 4k) = 12.
    for i, o in enumerate(others[:16]):
        a.handle(0.001 * (i + 1), ConnectionOpened(pid(o)))
    held = [pid(o) for o in others[:16]]
    drawn = _helpers_of_failed_probes(a, 20)
    for target, helpers in drawn:
        pool = [p for p in held if p != target][:12]  # the target is no helper: the next held one is
        assert helpers <= set(pool), (target, helpers)
    assert len(set().union(*(h for _, h in drawn))) > cfg.indirect_checks  # drawn at random among them


def test_with_too_few_connections_helpers_are_topped_up_from_every_member() -> None:
    cfg = SwimConfig(gossip_interval=0, ring_probe_every=0)
    others = [f"m{i:02d}" for i in range(40)]
    a = make_core("a", others, config=cfg)
    held = {pid(others[0]), pid(others[1])}
    for i, p in enumerate(sorted(held)):
        a.handle(0.001 * (i + 1), ConnectionOpened(p))  # 2 < k = 3
    drawn = _helpers_of_failed_probes(a, 10)
    for target, helpers in drawn:
        # The held ones first (but the target), the rest drawn among every member.
        assert held - {target} <= helpers, (target, helpers)
    assert len(set().union(*(h for _, h in drawn))) > 6  # the rest: memberlist's uniform draw over the 40


def test_a_lone_members_failed_probe_accuses_with_no_helper_to_ask() -> None:
    """Two members: no one to ask, so nothing to be silent; the failed probe
    accuses (and says why in the counters)."""
    a = make_core("a", ["b"], config=SwimConfig(gossip_interval=0))
    t, ping = first_probe(a)
    acts = run_until(a, t + a.config.probe_interval)
    assert not sends(acts, PingReq) and ("suspect", ping.to) in events(acts)
    assert (a.stats.suspected, a.stats.suspected_unhelped, a.stats.spared_silent) == (1, 1, 0)


MANY = [chr(c) for c in range(ord("b"), ord("n"))]  # 12: helpers are not also the members drawn ahead


def silent_probe(others: list[str] = OTHERS, **kw: object):  # type: ignore[no-untyped-def]
    """A core whose first probe ran its period unanswered, with not one Nack:
    (core, config, the probe's Ping, its PingReqs, when its extra period ends)."""
    cfg = SwimConfig(gossip_interval=0, **kw)  # type: ignore[arg-type]
    a = make_core("a", others, config=cfg)
    t, ping = first_probe(a)
    reqs = sends(run_until(a, t + cfg.probe_timeout), PingReq)
    assert len(reqs) == min(cfg.indirect_checks, len(others) - 1)
    acts = run_until(a, t + cfg.probe_interval)
    assert ("suspect", ping.to) not in events(acts) or kw.get("suspect_when_helpers_silent")
    end = t + cfg.probe_interval + cfg.probe_interval * (a.awareness.score + 1) + 1e-6
    # The next tick, stretched by the awareness the silence just raised;
    # the probe started meanwhile is answered (awareness - 1).
    (nxt,) = [p for p in sends(acts, Ping) if p.to != ping.to]
    deliver(a, t + cfg.probe_interval + 0.01, nxt.to, Message(nxt.message.seq, 0, Ack()))
    return a, cfg, ping, reqs, end, acts


@pytest.mark.parametrize("memberlist", [False, True])
def test_a_probe_whose_helpers_all_stay_silent_accuses_no_one(memberlist: bool) -> None:
    """Helpers Nack when they cannot reach the target either; not one Nack
    means our frames (or theirs) are not getting through: we are the slow
    one. Awareness rises at the period's end as in Lifeguard; by default the
    probe waits one more period for late Nacks, then no suspicion starts
    (suspect_when_helpers_silent=True: memberlist's, it does at once)."""
    a, cfg, ping, _, end, acts = silent_probe(suspect_when_helpers_silent=memberlist)
    assert (("suspect", ping.to) in events(acts)) is memberlist
    assert a.awareness.score == cfg.indirect_checks - 1  # +3 at the period's end, either way; -1 the next Ack
    assert a.stats.waited_nacks == (0 if memberlist else 1)
    assert (ping.to in a.upcoming()) is not memberlist  # waited on: its connection is still wanted
    acts = run_until(a, end)
    assert ("suspect", ping.to) not in events(acts)
    assert a.member(ping.to).state is (State.SUSPECT if memberlist else State.ALIVE)
    assert a.awareness.score == cfg.indirect_checks - 1  # not counted twice
    assert (a.stats.suspected, a.stats.spared_silent) == ((1, 0) if memberlist else (0, 1))
    assert a.stats.suspected_lost + a.stats.suspected_nacked + a.stats.suspected_unhelped == 0  # silent: none of those


@pytest.mark.parametrize("late", [Nack, Ack])
def test_a_late_nack_in_the_extra_period_accuses_a_late_ack_clears(late: type) -> None:
    """A crashed target's helpers Nack, but the Nacks may come after the
    period (a new connection, a busy one): one Nack in the extra period
    starts the suspicion at its end; the target's own late Ack clears it."""
    a, cfg, ping, reqs, end, _ = silent_probe(MANY)
    helpers = {r.to for r in reqs}
    assert helpers <= set(a.upcoming())  # the Nacks come on the helpers' connections
    sender = reqs[0].to if late is Nack else ping.to
    when = end - cfg.probe_interval  # early in the extra period (stretched by awareness)
    acts = deliver(a, when, sender, Message(ping.message.seq, 0, late()))
    # Either concludes at the period's end: an Ack after a Nack still clears.
    assert ("suspect", ping.to) not in events(acts)
    acts += run_until(a, end)
    assert (("suspect", ping.to) in events(acts)) is (late is Nack)
    assert a.awareness.score == cfg.indirect_checks - 1 and a.stats.spared_silent == 0
    assert a.stats.suspected_nacked == int(late is Nack)  # the reason, counted
    if late is Ack:
        assert a.member(ping.to).state is State.ALIVE and a.stats.waited_acked == 1


def test_the_targets_ack_after_a_helpers_nack_in_the_extra_period_clears() -> None:
    """The Nack waits for the period's end; the target's own Ack after it
    still clears the probe (alive, whatever a helper could not reach)."""
    a, cfg, ping, reqs, end, _ = silent_probe(MANY)
    when = end - cfg.probe_interval
    acts = deliver(a, when, reqs[0].to, Message(ping.message.seq, 0, Nack()))
    acts += deliver(a, when + 0.1, ping.to, Message(ping.message.seq, 0, Ack()))
    acts += run_until(a, end)
    assert ("suspect", ping.to) not in events(acts) and a.member(ping.to).state is State.ALIVE
    assert (a.stats.waited_acked, a.stats.suspected) == (1, 0)


def test_an_unhealthy_prober_spares_at_the_periods_end_and_ignores_late_nacks() -> None:
    """Already unhealthy (awareness above 0) before the probe: no extra
    period; a late Nack from a starved network is as false as the failed
    probe."""
    cfg = SwimConfig(gossip_interval=0)
    a = make_core("a", MANY, config=cfg)
    a.awareness.score = 1
    t, ping = first_probe(a)
    reqs = sends(run_until(a, t + 2 * cfg.probe_timeout), PingReq)
    acts = run_until(a, t + 2 * cfg.probe_interval)
    assert ("suspect", ping.to) not in events(acts)
    assert (a.stats.waited_nacks, a.stats.spared_silent) == (0, 1)
    assert a.awareness.score == 1 + cfg.indirect_checks
    deliver(a, t + 2 * cfg.probe_interval + 0.1, reqs[0].to, Message(ping.message.seq, 0, Nack()))
    assert a.stats.unsolicited == 1 and a.member(ping.to).state is State.ALIVE


def test_the_extra_period_keeps_the_helpers_connections() -> None:
    """Without the wait, last period's helpers are not among the
    connections our probes need (12 members: they are not drawn ahead)."""
    a, cfg, ping, reqs, _, _ = silent_probe(MANY, suspect_when_helpers_silent=True)
    assert not {r.to for r in reqs} <= set(a.upcoming())


def test_a_lost_connection_in_the_extra_period_accuses_at_once() -> None:
    a, cfg, ping, _, end, _ = silent_probe()
    acts = a.handle(end - 0.5, ConnectionLost(ping.to))
    assert ("suspect", ping.to) in events(acts)
    assert a.stats.spared_silent == 0 and a.awareness.score == cfg.indirect_checks - 1


def until_probed_silent_again(a: SwimCore, target: PeerId, score: int | None = None) -> bool:
    """Run until the round-robin has probed ``target`` again, unanswered
    (the other members answer; awareness set to ``score`` before each
    period, if given): was it suspected?"""
    for _ in range(100):
        if score is not None:
            a.awareness.score = score
        t, acts = next_tick(a)
        if ("suspect", target) in events(acts):
            return True
        if a.stats.spared_silent == 2:
            return False
        for p in sends(acts, Ping):
            if p.to != target:
                deliver(a, t + 0.01, p.to, Message(p.message.seq, 0, Ack()))
    raise AssertionError(f"{target} was not probed again in 100 periods")


def test_a_member_spared_and_not_heard_from_since_is_suspected_next_time() -> None:
    """A crash while our helpers stay starved: the first silent probe spares
    it, the next silent probe of it accuses, unless a frame from it came in
    between (alive after all: spared again)."""
    for heard in (False, True):
        a, cfg, ping, _, end, _ = silent_probe(MANY, ring_probe_every=0)
        run_until(a, end)
        assert (a.stats.spared_silent, a.stats.spared_again) == (1, 0)
        if heard:
            deliver(a, end + 0.01, ping.to, Message(0, 0, Gossip()))
        suspected = until_probed_silent_again(a, ping.to)
        assert suspected is not heard, heard
        if heard:
            assert (a.stats.spared_silent, a.stats.spared_again) == (2, 0)
        else:
            assert a.stats.spared_silent == 1 and a.stats.spared_again >= 1


@pytest.mark.parametrize("first_healthy, score, accused",
                         [(True, 2, True), (True, 3, True), (True, 4, False), (True, 7, False), (False, 1, False)])
def test_a_second_silent_probe_accuses_only_a_prober_no_worse_than_at_a_healthy_spare(
    first_healthy: bool, score: int, accused: bool
) -> None:
    """Spared once, silent again, not heard from since: a prober healthy at
    the first spare and, before this probe's raise, no worse than right
    after the first's (0 + 3 silent helpers) accuses, as the ring's
    predecessor does on its next turn with awareness still falling (2). One
    that got worse (4, 7), or was unhealthy at the first spare and still is,
    spares again: its silence says as little as its late Nacks (a merge
    under CPU contention: 11 of 14 own suspicions, all false, were second
    spares)."""
    if first_healthy:
        a, cfg, ping, _, end, _ = silent_probe(MANY, ring_probe_every=0)
        run_until(a, end)
    else:
        cfg = SwimConfig(gossip_interval=0, ring_probe_every=0)
        a = make_core("a", MANY, config=cfg)
        a.awareness.score = 1
        t, ping = first_probe(a)
        run_until(a, t + 2 * cfg.probe_interval)
    assert (a.stats.spared_silent, a.stats.waited_nacks) == (1, int(first_healthy))
    suspected = until_probed_silent_again(a, ping.to, score)  # as starved as this when the round-robin comes back
    assert suspected is accused
    assert (a.stats.spared_again, a.stats.suspected_again, a.stats.suspected) == (int(accused),) * 3
    assert a.stats.spared_silent == (1 if accused else 2)
    assert a.stats.waited_nacks == int(first_healthy)  # the second probe: never healthy (awareness above 0)


def test_a_lost_connection_accuses_though_the_helpers_stay_silent() -> None:
    """The target's connection ended without a goodbye during the probe
    (maybe a crash): that is evidence about it, not about us."""
    a = make_core("a", OTHERS)
    t, ping = first_probe(a)
    a.handle(t + 0.1, ConnectionLost(ping.to))
    acts = run_until(a, t + a.config.probe_interval)
    assert ("suspect", ping.to) in events(acts) and a.stats.spared_silent == 0 and a.stats.waited_nacks == 0
    assert (a.stats.suspected_lost, a.stats.suspected_nacked, a.stats.suspected_unhelped) == (1, 0, 0)


def test_a_probe_a_lost_connection_hinted_accuses_though_the_helpers_stay_silent() -> None:
    """A member whose connection was lost without a goodbye is probed next
    period (the hint); the loss is the same evidence as one during the
    probe: no extra period, no sparing."""
    a = make_core("a", MANY)
    t, ping = first_probe(a)
    deliver(a, t + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    lost = pid("m") if ping.to != pid("m") else pid("l")
    a.handle(t + 0.1, ConnectionLost(lost))
    acts = run_until(a, t + a.config.probe_interval)
    (probe,) = [p for p in sends(acts, Ping) if p.message.seq != ping.message.seq and p.to == lost]
    acts = run_until(a, t + 2 * a.config.probe_interval)
    assert ("suspect", lost) in events(acts)
    assert a.stats.waited_nacks == 0 and a.stats.spared_silent == 0 and a.stats.hinted_probes == 1


def probing_core(others: list[str] = OTHERS, **kw: object):  # type: ignore[no-untyped-def]
    """A core with close_grace on (off by default) unless ``kw`` says, and its
    first probe under way. Its silent helpers do not spare a target here
    (suspect_when_helpers_silent): these tests are about the grace."""
    kw.setdefault("close_grace", True)
    kw.setdefault("suspect_when_helpers_silent", True)
    cfg = SwimConfig(gossip_interval=0, **kw)  # type: ignore[arg-type]
    a = make_core("a", others, config=cfg)
    t, ping = first_probe(a)
    return a, cfg, t, ping


def grace_core(others: list[str] = OTHERS, **kw: object):  # type: ignore[no-untyped-def]
    """probing_core, and its target's close in order 0.1 s in."""
    a, cfg, t, ping = probing_core(others, **kw)
    a.handle(t + 0.1, ConnectionClosed(ping.to, by_peer=True))
    return a, cfg, t, ping


def test_a_target_that_closed_its_connection_in_order_gets_one_more_period() -> None:
    """close_grace: the target closed its connection in order (its process
    ran the close) before answering; our second Ping waits on a new
    connection, whose dial outlasts the period. Its Ack, a period late,
    still counts: no suspicion, so none to gossip and refute."""
    a, cfg, t, ping = grace_core()
    target = ping.to
    acts = run_until(a, t + cfg.probe_interval)  # the timeout's attempts, then the period's end
    assert len(sends(acts, Ping, to=target)) == 1  # the fallback Ping (the adapter dials for it)
    assert ("suspect", target) not in events(acts)
    (now,) = [s.to for s in sends(acts, Ping) if s.to != target]  # this period's probe
    assert a.stats.graced == 1 and a.upcoming()[:2] == [now, target]  # its connection still needed, after now's
    deliver(a, t + cfg.probe_interval + 0.3, target, Message(ping.message.seq, 0, Ack()))
    acts = run_until(a, t + 2 * cfg.probe_interval)
    assert ("suspect", target) not in events(acts)
    assert a.member(target).state is State.ALIVE
    assert (a.stats.probe_closes, a.stats.graced_acked) == (1, 1)


def test_a_graced_probe_still_unanswered_suspects_one_period_later() -> None:
    a, cfg, t, ping = grace_core()
    assert ("suspect", ping.to) not in events(run_until(a, t + cfg.probe_interval))
    acts = run_until(a, t + 2 * cfg.probe_interval)
    assert ("suspect", ping.to) in events(acts)
    assert a.member(ping.to).state is State.SUSPECT
    assert a.stats.graced_acked == 0


@pytest.mark.parametrize("event, close_grace", [
    (ConnectionLost, True),  # ended without GO_AWAY: maybe a crash
    (lambda p: ConnectionClosed(p, by_peer=False), True),  # we closed it: says nothing about the member
    (ConnectionClosed, SwimConfig().close_grace),  # close_grace off: the default (docs/swim.md)
])
def test_no_grace_for_a_lost_connection_our_own_close_or_with_close_grace_off(event: Any, close_grace: bool) -> None:
    a, cfg, t, ping = probing_core(close_grace=close_grace)
    a.handle(t + 0.1, event(ping.to))
    assert ("suspect", ping.to) in events(run_until(a, t + cfg.probe_interval))
    assert a.stats.graced == 0


def test_a_graced_probe_with_silent_helpers_waits_for_their_nacks_in_its_grace() -> None:
    """close_grace and silent helpers at once (suspect_when_helpers_silent
    off): the one extra period serves both; a helper's Nack in it accuses,
    silence in it spares."""
    for nack in (False, True):
        a, cfg, t, ping = grace_core(MANY, suspect_when_helpers_silent=False)
        reqs = sends(run_until(a, t + cfg.probe_timeout), PingReq)
        acts = run_until(a, t + cfg.probe_interval)
        assert ("suspect", ping.to) not in events(acts)
        assert (a.stats.graced, a.stats.waited_nacks) == (1, 1)
        end = t + cfg.probe_interval + cfg.probe_interval * (a.awareness.score + 1) + 1e-6
        (nxt,) = [p for p in sends(acts, Ping) if p.to != ping.to]  # the next probe: answered
        deliver(a, t + cfg.probe_interval + 0.01, nxt.to, Message(nxt.message.seq, 0, Ack()))
        assert {r.to for r in reqs} <= set(a.upcoming())
        if nack:
            deliver(a, end - 0.1, reqs[0].to, Message(ping.message.seq, 0, Nack()))
        acts = run_until(a, end)
        assert (("suspect", ping.to) in events(acts)) is nack
        assert a.stats.spared_silent == (0 if nack else 1)


def test_a_loss_after_the_close_takes_the_grace_back() -> None:
    a, cfg, t, ping = grace_core()
    a.handle(t + 0.2, ConnectionLost(ping.to))  # the new connection died unannounced
    a.handle(t + 0.6, ConnectionClosed(ping.to))  # and one more closed: no second mark, no second Ping
    acts = run_until(a, t + cfg.probe_interval)
    assert ("suspect", ping.to) in events(acts)
    assert a.stats.probe_closes == 1 and a.stats.graced == 0


def test_a_loss_in_the_extra_period_ends_it_at_once() -> None:
    a, cfg, t, ping = grace_core()
    assert ("suspect", ping.to) not in events(run_until(a, t + cfg.probe_interval))
    acts = a.handle(t + cfg.probe_interval + 0.3, ConnectionLost(ping.to))
    assert ("suspect", ping.to) in events(acts)


def test_a_close_after_the_timeout_sends_one_more_ping() -> None:
    """The fallback Ping went out on the connection now closed; one more,
    on the adapter's new dial, and only one however often it closes."""
    a, cfg, t, ping = probing_core()
    run_until(a, t + cfg.probe_timeout)
    acts = a.handle(t + 0.6, ConnectionClosed(ping.to)) + a.handle(t + 0.7, ConnectionClosed(ping.to))
    assert [s.message.seq for s in sends(acts, Ping, to=ping.to)] == [ping.message.seq]
    assert a.stats.probe_closes == 1


def test_a_close_after_the_answer_changes_nothing() -> None:
    a, cfg, t, ping = probing_core()
    deliver(a, t + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    a.handle(t + 0.1, ConnectionClosed(ping.to))
    run_until(a, t + 2 * cfg.probe_interval)
    assert (a.stats.probe_closes, a.stats.graced) == (0, 0)


def test_nacks_in_the_extra_period_still_spare_our_awareness() -> None:
    a, cfg, t, ping = grace_core()
    reqs = sends(run_until(a, t + cfg.probe_timeout), PingReq)
    (now,) = [p for p in sends(run_until(a, t + cfg.probe_interval), Ping) if p.to != ping.to]
    deliver(a, t + cfg.probe_interval + 0.01, now.to, Message(now.message.seq, 0, Ack()))  # this period's: fine
    for r in reqs:  # late, within the extra period
        deliver(a, t + cfg.probe_interval + 0.2, r.to, Message(ping.message.seq, 0, Nack()))
    assert a.awareness.score == 0
    acts = run_until(a, t + 2 * cfg.probe_interval)
    assert ("suspect", ping.to) in events(acts)
    assert a.awareness.score == 0  # every helper nacked: the network is at fault, not we (else +3)


def test_leaving_in_the_extra_period_suspects_no_one() -> None:
    a, cfg, t, ping = grace_core()
    run_until(a, t + cfg.probe_interval)
    a.handle(t + cfg.probe_interval + 0.1, Leave())
    assert ping.to not in a.upcoming()
    acts = run_until(a, t + 3 * cfg.probe_interval)
    assert ("suspect", ping.to) not in events(acts) and a.member(ping.to).state is State.ALIVE


def test_an_answer_to_either_of_two_probes_of_one_member_clears_both() -> None:
    """A roster of one: the graced member is probed again the next period; it
    answers that Ping, not the first."""
    a, cfg, t, ping = grace_core(others=["b"])
    acts = run_until(a, t + cfg.probe_interval)
    (again,) = [s for s in sends(acts, Ping) if s.message.seq != ping.message.seq]
    assert again.to == ping.to
    deliver(a, t + cfg.probe_interval + 0.05, ping.to, Message(again.message.seq, 0, Ack()))
    acts = run_until(a, t + 2 * cfg.probe_interval)
    assert ("suspect", ping.to) not in events(acts)
    assert a.stats.graced_acked == 1


def test_ack_forwarded_by_helper_prevents_suspicion() -> None:
    a = make_core("a", OTHERS)
    t, ping = first_probe(a)
    reqs = sends(run_until(a, t + 0.5), PingReq)
    acts = deliver(a, t + 0.6, reqs[0].to, Message(ping.message.seq, 0, Ack()))
    _, acts = next_tick(a)
    assert events(acts) == []
    assert a.member(ping.to).state is State.ALIVE


def test_ack_from_a_non_helper_is_not_believed() -> None:
    a = make_core("a", OTHERS, config=SwimConfig(gossip_interval=0, suspect_when_helpers_silent=True))
    t, ping = first_probe(a)
    reqs = sends(run_until(a, t + 0.5), PingReq)
    outsider = ({pid(o) for o in OTHERS} - {r.to for r in reqs} - {ping.to}) or {pid("zz")}
    deliver(a, t + 0.6, outsider.pop(), Message(ping.message.seq, 0, Ack()))
    _, acts = next_tick(a)
    assert ("suspect", ping.to) in events(acts)


def test_nacks_tell_us_the_network_not_we_are_at_fault() -> None:
    a = make_core("a", OTHERS)
    t, ping = first_probe(a)
    reqs = sends(run_until(a, t + 0.5), PingReq)
    for r in reqs:
        deliver(a, t + 0.8, r.to, Message(ping.message.seq, 0, Nack()))
    next_tick(a)
    assert a.member(ping.to).state is State.SUSPECT
    assert a.awareness.score == 0


def test_awareness_stretches_our_probe_timeout() -> None:
    cfg = SwimConfig()
    a = make_core("a", OTHERS, config=cfg)
    a.awareness.score = 3
    t, ping = first_probe(a)
    assert not sends(run_until(a, t + cfg.probe_timeout * 4 - 0.01), PingReq)
    assert sends(run_until(a, t + cfg.probe_timeout * 4 + 0.01), PingReq)
    # and the period: the next probe comes 4 periods later
    dl = a.next_deadline()
    assert dl == pytest.approx(t + 4 * cfg.probe_interval)


def test_awareness_is_bounded() -> None:
    cfg = SwimConfig(awareness_max_multiplier=3)
    a = make_core("a", OTHERS, config=cfg)
    for _ in range(10):
        a.awareness.apply(5)
    assert a.awareness.score == 2
    a.awareness.apply(-100)
    assert a.awareness.score == 0


@pytest.mark.parametrize("score", [0, 1, 2, 7])
def test_a_prober_in_poor_health_is_slow_to_convict(score: int) -> None:
    """Lifeguard's awareness applied to verdicts: a suspicion we take on while
    our score is s waits at least (s + 1) x the minimum, at most the maximum,
    however many confirm it; its timer is set when it starts. In a starved
    100-node devnet without it, the median node made 330 failure verdicts
    (docs/swim.md, "A starved node slows down")."""
    cfg = SwimConfig()
    a = make_core("a", OTHERS, config=cfg)
    a.awareness.score = score
    x = pid("e")
    for k, origin in enumerate(("b", "c", "d")):  # the accuser and two confirmations
        deliver(a, 1.0, pid(origin), Message(k + 1, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid(origin)),)))
    s = a._suspicions[x]  # noqa: SLF001
    steady = s.max / cfg.suspicion_max_timeout_mult
    want = min(s.max, (score + 1) * steady)
    assert s.min == pytest.approx(want)
    assert s.deadline == pytest.approx(1.0 + want)  # confirmed: down to its minimum, no further
    assert a.stats.slowed_verdicts == (1 if score else 0)
    a.awareness.score = 0  # health coming back later does not move a running timer
    assert ("failed", x) not in events(run_until(a, 1.0 + want - 0.01))
    assert ("failed", x) in events(run_until(a, 1.0 + want + 0.01))


def test_with_awareness_slows_verdicts_off_a_poor_score_convicts_at_the_minimum() -> None:
    cfg = SwimConfig(awareness_slows_verdicts=False)
    a = make_core("a", OTHERS, config=cfg)
    a.awareness.score = 7
    x = pid("e")
    deliver(a, 1.0, pid("b"), Message(1, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid("b")),)))
    s = a._suspicions[x]  # noqa: SLF001
    assert s.min == pytest.approx(s.max / cfg.suspicion_max_timeout_mult)


def test_helper_role_forwards_ack_or_nacks() -> None:
    h = make_core("h", ["a", "t"])
    acts = deliver(h, 1.0, pid("a"), Message(77, 0, PingReq(pid("t"), (), 0.3)))
    (ping,) = sends(acts, Ping, to=pid("t"))
    acts = deliver(h, 1.1, pid("t"), Message(ping.message.seq, 0, Ack()))
    (fwd,) = sends(acts, Ack, to=pid("a"))
    assert fwd.message.seq == 77
    # second request: target silent -> Nack after the requested timeout
    acts = deliver(h, 2.0, pid("a"), Message(78, 0, PingReq(pid("t"), (), 0.3)))
    assert not sends(run_until(h, 2.29), Nack)
    (nack,) = sends(run_until(h, 2.31), Nack)
    assert nack.to == pid("a") and nack.message.seq == 78


def test_a_helper_in_poor_health_nacks_at_once_rather_than_dial_the_target() -> None:
    """With connections reported, a helper whose own score is above 0 and
    that holds no connection to the target answers a Nack at once and sends
    no Ping (a dial for someone else's probe would add to its load); healthy,
    or over a connection it holds, it pings as before."""

    def helper_pings(acts: list[Any]) -> list[Any]:
        return [a for a in sends(acts, Ping, to=pid("t")) if a.why == "helper"]

    def ask(core: SwimCore, t: float, seq: int, score: int) -> list[Any]:
        run_until(core, t)  # the core's own timers first: they may move the score
        core.awareness.score = score
        return deliver(core, t, pid("a"), Message(seq, 0, PingReq(pid("t"), (), 0.3)))

    h = make_core("h", ["a", "t"])
    h.handle(0.5, ConnectionOpened(pid("a")))  # the adapter reports connections; none to t
    acts = ask(h, 1.0, 77, score=1)
    assert not helper_pings(acts)
    (nack,) = [n for n in sends(acts, Nack, to=pid("a")) if n.message.seq == 77]
    assert not nack.dial
    assert h.stats.indirect_unconnected == 1 and h.stats.indirect_pings == 0
    # Healthy again: the helper dials the target for the asker.
    acts = ask(h, 2.0, 78, score=0)
    (ping,) = helper_pings(acts)
    assert ping.dial and not [n for n in sends(acts, Nack) if n.message.seq == 78]
    # In poor health but holding a connection to the target: it pings over it.
    h.handle(2.5, ConnectionOpened(pid("t")))
    acts = ask(h, 3.0, 79, score=2)
    assert helper_pings(acts) and not [n for n in sends(acts, Nack) if n.message.seq == 79]
    assert h.stats.indirect_unconnected == 1
    # No connections reported (SWIM's own simulator): it pings, whatever its score.
    s = make_core("s", ["a", "t"])
    acts = ask(s, 1.0, 80, score=3)
    assert helper_pings(acts) and s.stats.indirect_unconnected == 0


# ------------------------------------------------------------ suspicion


def test_suspicion_timeout_shrinks_with_independent_confirmations() -> None:
    s = Suspicion(10.0, 0, k=2, min_timeout=4.0, max_timeout=24.0, origin=b"x")
    assert s.deadline == 34.0
    assert not s.confirm(b"x")  # the accuser does not confirm itself
    assert s.confirm(b"y")
    assert 14.0 < s.deadline < 34.0
    assert s.confirm(b"z")
    assert s.deadline == 14.0
    assert not s.confirm(b"w")  # beyond k: nothing more to gain
    assert s.deadline == 14.0


def test_confirmations_from_gossip_bring_death_forward() -> None:
    cfg = SwimConfig()
    a = make_core("a", OTHERS, config=cfg)
    x = pid("e")
    deliver(a, 1.0, pid("b"), Message(1, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid("b")),)))
    assert a.member(x).state is State.SUSPECT
    deliver(a, 1.1, pid("c"), Message(2, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid("c")),)))
    deliver(a, 1.2, pid("d"), Message(3, 0, Ack(), (MemberUpdate(x, State.SUSPECT, 0, (), pid("d")),)))
    # Keep x's own probes from interfering: it stays suspect and silent.
    acts = run_until(a, 1.0 + cfg.suspicion_min(5) + 0.01)
    assert ("failed", x) in events(acts)


# ------------------------------------------------------------ refutation / buddy


def test_suspect_is_told_on_the_next_frame_and_refutes() -> None:
    a = make_core("a", OTHERS)
    x = make_core("e", ["a", "b", "c", "d"])
    deliver(a, 1.0, pid("b"), Message(1, 0, Ack(), (MemberUpdate(pid("e"), State.SUSPECT, 0, (), pid("b")),)))
    # x pings a; a's ack must lead with the accusation (buddy system)
    acts = deliver(a, 1.5, pid("e"), Message(9, x.incarnation, Ping(pid("a"))))
    (ack,) = sends(acts, Ack)
    assert ack.message.updates[0].peer_id == pid("e") and ack.message.updates[0].state is State.SUSPECT
    deliver(x, 1.51, pid("a"), ack.message)
    assert x.incarnation == 1 and x.stats.refutations == 1
    assert x.awareness.score == 1  # having to refute is a sign we are slow
    # x's next frame refutes at a: header incarnation 1 > suspect(0)
    _, acts = next_tick(x)
    frame = sends(acts)[0].message
    assert frame.incarnation == 1
    assert any(u.peer_id == pid("e") and u.state is State.ALIVE and u.incarnation == 1 for u in frame.updates)
    acts = deliver(a, 2.0, pid("e"), frame)
    assert ("recovered", pid("e")) in events(acts)
    assert a.member(pid("e")).state is State.ALIVE


def declare_dead(a, peer: bytes, t: float) -> float:  # type: ignore[no-untyped-def]
    """Make ``a`` declare ``peer`` dead the only way it does: its own suspicion
    timer (here shortened by three independent "dead" reports). Returns the time."""
    for o in ("b", "c", "d"):
        deliver(a, t, pid(o), Message(1, 0, Ack(), (MemberUpdate(peer, State.DEAD, 0),)))
    end = t + a.config.suspicion_min(5) + 0.01
    assert ("failed", peer) in events(run_acking(a, end, silent=peer))
    assert a.member(peer).state is State.DEAD
    return end


def run_acking(a, until: float, silent: bytes):  # type: ignore[no-untyped-def]
    """Run ``a``'s timers up to ``until``; every member but ``silent`` acks its pings."""
    out = []
    while (dl := a.next_deadline()) is not None and dl <= until:
        acts = a.handle(dl, Tick())
        out += acts
        for p in sends(acts, Ping):
            if p.to != silent:
                out += deliver(a, dl, p.to, Message(p.message.seq, 0, Ack()))
    return out


def test_dead_member_that_talks_to_us_refutes_and_recovers() -> None:
    a = make_core("a", OTHERS)
    x = make_core("e", ["a", "b", "c", "d"])
    t = declare_dead(a, pid("e"), 1.0)
    ack = sends(deliver(a, t + 0.5, pid("e"), Message(9, 0, Ping(pid("a")))), Ack)[0]
    assert ack.message.updates[0].state is State.DEAD
    deliver(x, t + 0.6, pid("a"), ack.message)
    assert x.incarnation == 1
    acts = deliver(a, t + 0.7, pid("e"), Message(10, x.incarnation, Ping(pid("a"))))
    assert ("recovered", pid("e")) in events(acts)


def test_reconnect_pings_go_to_dead_members() -> None:
    cfg = SwimConfig(reconnect_every=2)
    a = make_core("a", OTHERS, config=cfg)
    t = declare_dead(a, pid("e"), 0.0)
    acts = run_acking(a, t + 3.0, silent=pid("e"))
    to_dead = sends(acts, Ping, to=pid("e"))
    assert to_dead and to_dead[0].message.updates[0].state is State.DEAD


# ------------------------------------------------------------ join / leave


def test_discovered_peer_is_probed_before_it_joins() -> None:
    a = make_core("a", [])
    acts = a.handle(0.0, MemberDiscovered(pid("b"), (b"\x01addr",)))
    (ping,) = sends(acts, Ping, to=pid("b"))
    assert ping.addrs == (b"\x01addr",)
    assert a.member(pid("b")) is None
    acts = deliver(a, 0.1, pid("b"), Message(ping.message.seq, 3, Ack()))
    assert events(acts) == [("joined", pid("b"))]
    assert a.member(pid("b")).incarnation == 3
    assert a.member(pid("b")).addrs == (b"\x01addr",)


def _admitted_from_a_header(a: SwimCore) -> None:
    """``b``, a stranger, pings ``a``: a frame's header says who and at which
    incarnation, never where. ``a`` admits it without addresses."""
    acts = deliver(a, 0.0, pid("b"), Message(1, 3, Ping(pid("a"))))
    assert events(acts) == [("joined", pid("b"))]
    assert a.member(pid("b")).addrs == ()
    queued = a._queue.get(pid("b"))  # noqa: SLF001 — what a passes on about b
    assert queued is not None and queued.state is State.ALIVE and queued.addrs == ()


def test_a_member_admitted_from_a_header_passes_on_the_addresses_the_peerstore_finds() -> None:
    """Without addresses, every member that hears of b from a holds a
    candidate it cannot dial, and a helper a asks to ping b cannot either
    (a 100-node devnet: 3,226 of 14,205 SWIM stream opens failed with "no
    known address"). The adapter finds them (identify) and says so."""
    a = make_core("a", [])
    _admitted_from_a_header(a)
    a.handle(1.0, MemberDiscovered(pid("b"), (b"\x01addr",)))
    assert a.member(pid("b")).addrs == (b"\x01addr",)
    assert a._queue.get(pid("b")).addrs == (b"\x01addr",)  # noqa: SLF001
    assert a.stats.addrs_learnt == 1
    # c hears of b from a's next frame, with the addresses to dial it.
    acts = deliver(a, 1.1, pid("c"), Message(7, 0, Ping(pid("a"))))
    told = [u for s in sends(acts, to=pid("c")) for u in s.message.updates if u.peer_id == pid("b")]
    assert told and all(u.addrs == (b"\x01addr",) for u in told)
    # Addresses a member already has are not replaced by a discovery.
    a.handle(2.0, MemberDiscovered(pid("b"), (b"\x02other",)))
    assert a.member(pid("b")).addrs == (b"\x01addr",) and a.stats.addrs_learnt == 1


def test_a_signed_word_without_addresses_is_not_replaced_by_an_unsigned_one() -> None:
    """A node listening on a wildcard address signs its "alive" without
    addresses. Addresses found later (the peerstore) are kept, but what we
    pass on stays its signed word: far members need the signature to take a
    new incarnation from a relay."""
    a = make_core("a", [])
    _admitted_from_a_header(a)
    bare = signed_update(sim_signer(pid("b")), pid("b"), State.ALIVE, 3, ())
    deliver(a, 0.5, pid("b"), Message(2, 3, Ack(), (bare,)))
    assert a._queue.get(pid("b")) == bare  # noqa: SLF001 — its signed word replaced our unsigned copy
    a.handle(1.0, MemberDiscovered(pid("b"), (b"\x01addr",)))
    assert a.member(pid("b")).addrs == (b"\x01addr",) and a.stats.addrs_learnt == 1
    assert a._queue.get(pid("b")) == bare  # noqa: SLF001


def test_a_member_admitted_from_a_header_passes_on_its_own_signed_word_with_addresses() -> None:
    a = make_core("a", [])
    _admitted_from_a_header(a)
    own = signed_update(sim_signer(pid("b")), pid("b"), State.ALIVE, 3, (b"\x01addr",))
    deliver(a, 1.0, pid("b"), Message(2, 3, Ack(), (own,)))
    assert a.member(pid("b")).addrs == (b"\x01addr",)
    assert a._queue.get(pid("b")) == own  # noqa: SLF001 — relayed as signed: receivers can trust it
    assert a.stats.addrs_learnt == 1


def test_silent_discovered_peer_never_joins() -> None:
    cfg = SwimConfig(join_attempts=3)
    a = make_core("a", [], config=cfg)
    acts = a.handle(0.0, MemberDiscovered(pid("b")))
    acts += run_until(a, 10.0)
    assert len(sends(acts, Ping, to=pid("b"))) == 3
    assert a.member(pid("b")) is None and not events(acts)


def _alone_with_a_silent_connection(cfg: SwimConfig) -> tuple[SwimCore, list[float]]:
    """``a`` connected to ``b``, which answers nothing for 60 s: when a pinged b."""
    a = make_core("a", [], config=cfg)
    times = [0.0] * len(sends(a.handle(0.0, MemberDiscovered(pid("b"))), Ping, to=pid("b")))
    a.handle(0.0, ConnectionOpened(pid("b")))
    while (dl := a.next_deadline()) is not None and dl <= 60.0:
        times += [dl] * len(sends(a.handle(dl, Tick()), Ping, to=pid("b")))
    return a, times


def test_alone_though_connected_pings_its_connections_again_backing_off() -> None:
    """A peer whose join pings all went unanswered (busy, not gone) is tried
    again while its connection lasts and we hold no live member; the waits
    double up to rejoin_alone_max. Without it (0) we stayed alone for good
    (seen in a 100-node devnet: newcomers behind two busy bootstrap peers)."""
    off = SwimConfig(gossip_interval=0, join_attempts=3, rejoin_alone_after=0)
    _, times = _alone_with_a_silent_connection(off)
    assert len(times) == 3 and max(times) < 4.0  # the join attempts, then nothing

    cfg = SwimConfig(gossip_interval=0, join_attempts=3, rejoin_alone_after=4, rejoin_alone_max=16)
    a, times = _alone_with_a_silent_connection(cfg)
    rounds = [t for i, t in enumerate(times) if i % 3 == 0][1:]  # each re-proposal: join_attempts pings
    gaps = [round(b - x) for x, b in zip(rounds, rounds[1:])]
    assert gaps[:2] == [8, 16] and set(gaps[2:]) == {16}, gaps
    assert rounds[0] < 4.0 + 4 + 2  # the first: rejoin_alone_after periods after the join attempts' start
    assert a.stats.rejoin_proposals == len(rounds) and a.member(pid("b")) is None

    # b's addresses come (a discovery) while it is re-proposed: kept for when it joins.
    a.handle(60.0, MemberDiscovered(pid("b"), (b"\x01addr",)))
    # b answers from now on: it joins at the next re-proposal, which is the last.
    before = a.stats.rejoin_proposals
    acts = run_acking(a, 200.0, silent=b"")
    assert events(acts) == [("joined", pid("b"))]
    assert a.member(pid("b")).live and a.stats.rejoin_proposals <= before + 1
    assert a.member(pid("b")).addrs == (b"\x01addr",)


def test_alone_rejoin_asks_only_connected_peers_and_waits_for_one() -> None:
    """Only connected peers: a stranger we heard of but never connected to
    is not pinged again once its join attempts are spent, while a connected
    one is. Alone with nobody to ask, the wait is not spent: the first peer
    to connect later is asked at once, not after a doubled wait."""
    cfg = SwimConfig(gossip_interval=0, join_attempts=2, rejoin_alone_after=2, rejoin_alone_max=64)
    a = make_core("a", [], config=cfg)
    acts = a.handle(0.0, MemberDiscovered(pid("b")))  # heard of, never connected
    acts += run_until(a, 40.0)  # alone, nobody connected: nothing to ask
    assert len(sends(acts, Ping, to=pid("b"))) == 2 and a.stats.rejoin_proposals == 0
    a.handle(40.0, ConnectionOpened(pid("c")))  # connected, never proposed (the adapter's MemberDiscovered lost)
    acts = run_until(a, 42.5)
    assert sends(acts, Ping, to=pid("c")) and not sends(acts, Ping, to=pid("b"))
    assert a.stats.rejoin_proposals == 1


def test_unknown_sender_joins_first_hand() -> None:
    a = make_core("a", ["b"])
    acts = deliver(a, 0.5, pid("z"), Message(5, 0, Ping(pid("a"))))
    assert ("joined", pid("z")) in events(acts)
    assert sends(acts, Ack, to=pid("z"))


def test_graceful_leave_then_rejoin_recovers() -> None:
    cfg = SwimConfig()
    x = make_core("x", ["a", "b", "c"], config=cfg)
    a = make_core("a", ["x", "b", "c"], config=cfg)
    acts = x.handle(0.1, Leave())
    pings = sends(acts, Ping)
    assert pings and all(any(u.peer_id == pid("x") and u.state is State.LEFT for u in p.message.updates)
                         for p in pings)
    frame = pings[0].message
    acts = deliver(a, 0.2, pid("x"), frame)
    assert ("left", pid("x")) in events(acts)
    assert not sends(run_until(a, 60.0), Ping, to=pid("x"))  # a no longer probes x
    acts = run_until(x, 0.1 + cfg.leave_periods * cfg.probe_interval + 0.01)
    assert any(isinstance(act, LeaveComplete) for act in acts)
    assert x.stopped and x.handle(100.0, MemberDiscovered(pid("a"))) == []
    # x restarts (incarnation 0 again) and talks to a: told it left, refutes, recovered
    x2 = make_core("x", ["a"], config=cfg, now=70.0, seed=5)
    ack = sends(deliver(a, 70.0, pid("x"), Message(1, 0, Ping(pid("a")))), Ack)[0]
    assert ack.message.updates[0].state is State.LEFT
    deliver(x2, 70.01, pid("a"), ack.message)
    assert x2.incarnation == 1
    acts = deliver(a, 70.02, pid("x"), Message(2, x2.incarnation, Ping(pid("a"))))
    assert ("recovered", pid("x")) in events(acts)


def test_left_member_is_not_probed() -> None:
    a = make_core("a", ["b", "c"])
    deliver(a, 0.0, pid("b"), Message(1, 0, Nack(), (MemberUpdate(pid("b"), State.LEFT, 0),)))
    acts = run_until(a, 20.0)
    assert not [s for s in sends(acts, Ping, to=pid("b"))]


# ------------------------------------------------------------ dissemination


def test_each_update_is_retransmitted_lambda_log_n_times() -> None:
    cfg = SwimConfig()
    others = [f"m{i}" for i in range(30)]
    a = make_core("a", others, config=cfg)
    news = MemberUpdate(pid("m7"), State.SUSPECT, 0, (), pid("m1"))
    deliver(a, 0.0, pid("m1"), Message(1, 0, Nack(), (news,)))
    carried = 0
    t = 0.0
    for _ in range(200):
        t, acts = next_tick(a)
        for s in sends(acts):
            carried += sum(1 for u in s.message.updates if u.peer_id == pid("m7") and u.origin == pid("m1"))
            if isinstance(s.message.body, Ping):
                deliver(a, t + 0.01, s.to, Message(s.message.seq, 0, Ack()))
    # buddy copies (origin a) are extra; the gossip copy is sent exactly lambda*log N times
    assert carried == cfg.retransmit_limit(31)
    assert cfg.retransmit_limit(31) == 4 * math.ceil(math.log10(32))


def test_broadcast_queue_prefers_fresh_news_and_is_bounded() -> None:
    q = BroadcastQueue(max_size=3)
    for i in range(5):
        q.push(MemberUpdate(bytes([i]) * 8, State.ALIVE, 0))
    assert len(q) == 3
    first = q.take(limit=2, max_count=1, budget=1000)
    assert first[0].peer_id == bytes([4]) * 8  # newest, least transmitted first
    q.push(MemberUpdate(bytes([4]) * 8, State.DEAD, 0))  # replaces, back to 0 transmits
    assert len(q) == 3
    assert q.take(limit=2, max_count=1, budget=1000)[0].state is State.DEAD
    assert q.take(limit=2, max_count=10, budget=10) == []  # nothing fits the budget


def test_frames_respect_size_and_count_bounds() -> None:
    cfg = SwimConfig(max_frame_bytes=600, max_updates_per_frame=5)
    others = [f"m{i:03d}" for i in range(100)]
    a = make_core("a", others, config=cfg)
    ups = tuple(MemberUpdate(pid(f"new{i}"), State.ALIVE, 0, (b"x" * 20,)) for i in range(40))
    deliver(a, 0.0, pid("m001"), Message(1, 0, Nack(), ups))
    assert a.stats.malformed == 0
    from agentp2p.protocol.swim import encode

    for s in sends(run_until(a, 5.0)):
        assert len(s.message.updates) <= 5
        assert len(encode(s.message)) <= 600


def test_an_accusation_at_the_incarnation_cap_is_never_encoded() -> None:
    """A liar alive at MAX_INCARNATION, then silent: an honest member that
    suspects it must not write 'suspect at MAX' into its frames — decode
    refuses that (the accused could not refute), and the whole frame, with
    its ping or ack, would be lost and its sender taken for a liar."""
    from agentp2p.protocol.swim import Ack, MAX_INCARNATION, MemberUpdate, Message, State
    from agentp2p.protocol.swim.wire import decode, encode, encoded_size

    liar = pid("liar")
    msg = Message(7, 3, Ack(), (MemberUpdate(liar, State.SUSPECT, MAX_INCARNATION),
                                MemberUpdate(pid("b"), State.ALIVE, 5)))
    frame = encode(msg)
    assert len(frame) == encoded_size(msg)
    back = decode(frame)
    assert isinstance(back.body, Ack) and [u.peer_id for u in back.updates] == [pid("b")]
    assert decode(encode(Message(1, 0, Ack(), (MemberUpdate(liar, State.ALIVE, MAX_INCARNATION),)))).updates


# ------------------------------------------------------------ connect ahead


def _probe_run(core, probes: int, *, before_each=None):  # type: ignore[no-untyped-def]
    """Run periods, acking every ping at once, until ``probes`` probes went
    out; returns (probe targets, ConnectAhead hints), in order."""
    probed: list[bytes] = []
    hinted: list[ConnectAhead] = []
    t = 0.0
    while len(probed) < probes and t < 10.0 * probes:
        t += 0.05
        acts = run_until(core, t)
        hints = [a for a in acts if isinstance(a, ConnectAhead)]
        for s in sends(acts, Ping):
            probed.append(s.to)
            hinted.extend(hints)
            hints = []
            deliver(core, t, s.to, Message(s.message.seq, 0, Ack()))
            if before_each is not None:
                before_each(core, t, hinted)
    return probed, hinted


@pytest.mark.parametrize("seed", range(6))
def test_drawing_ahead_keeps_the_round_robin_order_and_announces_each_next_target(seed: int) -> None:
    others = [f"m{i}" for i in range(4)]
    runs = {k: _probe_run(make_core("a", others, seed=seed, config=SwimConfig(connect_ahead=k, ring_probe_every=0)), 24)
            for k in (0, 1, 3)}
    # Every probe acked: the core draws nothing else at random, so the
    # targets are the same with or without drawing ahead ...
    assert runs[0][0] == runs[1][0] == runs[3][0]
    probed = runs[0][0]
    members = {pid(o) for o in others}
    for r in range(6):
        assert set(probed[4 * r:4 * r + 4]) == members  # ... each once per round
    assert runs[0][1] == []
    # With one period ahead, each target was announced the period before
    # (unless it is the one just probed again: the connection is there).
    hinted = [h.to for h in runs[1][1]]
    expect = [nxt for prev, nxt in zip(probed, probed[1:]) if nxt != prev]
    assert hinted[:len(expect)] == expect
    assert all(h.addrs for h in runs[1][1])  # with the address hints a dial needs


def test_a_member_that_left_after_it_was_drawn_is_not_probed() -> None:
    others = [f"m{i}" for i in range(10)]
    gone: list[bytes] = []

    def leave_next(core, t, hinted):  # type: ignore[no-untyped-def]
        if not gone and hinted:
            gone.append(hinted[-1].to)  # announced for the next period: it leaves before then
            deliver(core, t, gone[0], Message(99, 0, Nack(), (MemberUpdate(gone[0], State.LEFT, 0),)))

    probed, _ = _probe_run(make_core("a", others, config=RR_ONLY), 12, before_each=leave_next)
    assert gone and gone[0] not in probed
    assert len(set(probed[:9])) == 9  # the round goes on with the others


def test_connect_ahead_is_bounded_in_config() -> None:
    with pytest.raises(ValueError, match="connect_ahead"):
        SwimConfig(connect_ahead=9)


# ------------------------------------------------------------ what the connection manager keeps


@pytest.mark.parametrize("ring", [0, 2, 3])
def test_every_probe_goes_to_a_member_named_upcoming_the_period_before(ring: int) -> None:
    """SwimCore.upcoming is what the node's connection manager spares: a
    connection closed as idle just before its probe makes a live member
    suspect. Each period's target — a draw ahead or, on the ring's turn,
    our successor — must have been named first a period early."""
    cfg = SwimConfig(gossip_interval=0, ring_probe_every=ring)
    members = [pid(f"m{i}") for i in range(12)]
    a = make_core("a", [f"m{i}" for i in range(12)], config=cfg)
    lose = random.Random(ring)
    t, acts = next_tick(a)  # the first period: nothing was drawn before it
    for period in range(60):
        for s in sends(acts, Ping):
            deliver(a, t, s.to, Message(s.message.seq, 0, Ack()))  # every probe answered at once
        if period % 7 == 3:
            # Lost connections jump the queue for two periods; three at once
            # leave one at the head older than that, on the ring's turn or not.
            for peer in lose.sample(members, 3):
                a.handle(t + 0.01, ConnectionLost(peer))
        acts = []
        while not sends(acts, Ping):  # push/pull timers may come before the period's tick
            named = a.upcoming()
            assert len(named) <= cfg.connect_ahead + 1 + 4 and len(set(named)) == len(named)
            t, acts = next_tick(a)
        (ping,) = sends(acts, Ping)
        assert ping.to == named[0]  # soonest first
    assert (a.stats.ring_probes > 0) == (ring > 0)  # the ring's turns were among them
    assert a.stats.hinted_probes > 0


def test_upcoming_names_live_members_only() -> None:
    cfg = SwimConfig(gossip_interval=0, ring_probe_every=0)
    a = make_core("a", [f"m{i}" for i in range(10)], config=cfg)
    t, acts = next_tick(a)
    (ping,) = sends(acts, Ping)
    deliver(a, t + 0.01, ping.to, Message(ping.message.seq, 0, Ack()))
    ahead = a.upcoming()
    assert len(ahead) == cfg.connect_ahead
    gone = ahead[0]
    deliver(a, t + 0.02, gone, Message(99, 0, Nack(), (MemberUpdate(gone, State.LEFT, 0),)))
    assert a.upcoming() == ahead[1:]  # drawn ahead, then left: its connection is not needed


def test_upcoming_holds_the_probe_under_way_and_its_helpers_until_answered() -> None:
    cfg = SwimConfig(gossip_interval=0, ring_probe_every=0)
    a = make_core("a", [f"m{i}" for i in range(10)], config=cfg)
    t, acts = next_tick(a)
    (ping,) = sends(acts, Ping)
    ahead = [h.to for h in acts if isinstance(h, ConnectAhead)]
    assert len(ahead) == cfg.connect_ahead
    assert a.upcoming() == [ping.to, *ahead]
    reqs = sends(run_until(a, t + cfg.probe_timeout), PingReq)
    assert len(reqs) == cfg.indirect_checks
    assert a.upcoming() == [ping.to, *sorted(r.to for r in reqs), *ahead]
    deliver(a, t + 0.6, reqs[0].to, Message(ping.message.seq, 0, Ack()))
    assert a.upcoming() == ahead  # answered: the probe needs no connection any more


def test_raising_a_suspicions_minimum_counts_from_its_start_and_survives_confirmations() -> None:
    """A healing window's stretch (core._stretch_suspicions): the deadline
    moves later only when the minimum decided it, once, and a confirmation
    after it cannot bring the old minimum back."""
    s = Suspicion(10.0, 0, 2, min_timeout=3.0, max_timeout=9.0, origin=b"x")
    assert not s.raise_min(6.0) and s.deadline == 19.0  # no confirmation yet: the maximum decides
    s.confirm(b"y")
    s.confirm(b"z")
    assert s.deadline == 16.0  # two confirmations: at the (raised) minimum, not 13
    assert not s.raise_min(6.0) and not s.raise_min(4.0)  # already at it: nothing moves, no timer to arm
    t = Suspicion(10.0, 0, 2, min_timeout=3.0, max_timeout=9.0, origin=b"x")
    t.confirm(b"y")
    t.confirm(b"z")
    assert t.deadline == 13.0
    assert t.raise_min(12.0) and (t.min, t.max, t.deadline) == (12.0, 12.0, 22.0)
