"""Push/pull anti-entropy (pushpull.py): wire bounds, digests, merging through
the ordinary rules, rate limits, and partition merge on the simulator.

All on virtual time; the cores use the simulator's stand-in signatures."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from agentp2p.pb import swim_pb2
from agentp2p.protocol.swim import (
    Ack,
    ConnectionOpened,
    MemberDiscovered,
    MemberUpdate,
    Message,
    Ping,
    Received,
    RosterBase,
    Send,
    State,
    SwimConfig,
    SwimCore,
    WireError,
    decode,
    encode,
)
from agentp2p.protocol.swim.messages import PushPull, Step
from agentp2p.protocol.swim.pushpull import ViewDigest, level_for
from agentp2p.protocol.swim.roster import MemberTable
from agentp2p.protocol.swim.signature import signed_update
from agentp2p.protocol.swim.member import Member
from agentp2p.simulation.swim import SwimSimulation, sim_signer
from agentp2p.simulation.swim_metrics import Observer
from tests.protocol.swim.swimhelpers import deliver, events, make_core, pid, run_until, sends

ADDR = b"\x04\x7f\x00\x00\x01\x06\x0f\xa1"
#: Periodic exchanges every second (tests), nothing else changed.
PP = SwimConfig(push_pull_interval=1.0)


def pump(
    cores: dict[bytes, SwimCore], t: float, sender: bytes, actions: list, only: type | None = PushPull
) -> list[Send]:
    """Deliver ``sender``'s Sends (and the answers they cause) among ``cores``
    at time ``t``, only frames with an ``only`` body. Returns those Sends."""
    queue = [(sender, a) for a in actions if isinstance(a, Send)]
    seen: list[Send] = []
    while queue:
        src, send = queue.pop(0)
        dst = cores.get(send.to)
        if only is not None and not isinstance(send.message.body, only):
            continue
        seen.append(send)
        if dst is None:
            continue
        queue += [(send.to, a) for a in dst.handle(t, Received(src, send.message)) if isinstance(a, Send)]
    return seen


def requests(actions: list) -> list[Send]:
    return [s for s in sends(actions, PushPull) if s.message.body.step is Step.REQUEST]


def first_request(core: SwimCore, until: float, to: bytes | None = None,
                  ackers: dict[bytes, int] | None = None) -> tuple[float, Send]:
    """Run ``core``'s timers until it starts a push/pull (with ``to``); (time,
    REQUEST). Nobody answers the other REQUESTs: they time out and those
    members are left alone. Pings to ``ackers`` (peer -> its incarnation) are acked."""
    while (dl := core.next_deadline()) is not None and dl <= until:
        acts = run_until(core, dl)
        for p in sends(acts, Ping):
            if ackers and p.to in ackers:
                core.handle(dl, Received(p.to, Message(p.message.seq, ackers[p.to], Ack())))
        r = [s for s in requests(acts) if to is None or s.to == to]
        if r:
            return dl, r[0]
    raise AssertionError("no push/pull started")


# ------------------------------------------------------------------ wire


def test_push_pull_wire_round_trip() -> None:
    entries = (
        MemberUpdate(pid("a"), State.ALIVE, 3, (ADDR,), b"", b"s" * 64),
        MemberUpdate(pid("b"), State.DEAD, 1),
        MemberUpdate(pid("c"), State.SUSPECT, 2, (), pid("a")),
    )
    for body in (
        PushPull(Step.REQUEST, 3, tuple(range(8))),
        PushPull(Step.REQUEST, 0, (0xFFFFFFFF,)),
        PushPull(Step.REPLY, 3, (), frozenset({0, 7}), 1, 3, entries),
        PushPull(Step.REPLY, 8, (), frozenset({0, 255}), 0, 1, ()),
        PushPull(Step.REPLY, 2, (), frozenset(), 0, 1, (), busy=True),
        PushPull(Step.PUSH, 1, (), frozenset({1}), 0, 1, entries),
    ):
        msg = Message(7, 1, body, (MemberUpdate(pid("x"), State.ALIVE, 0),))
        assert decode(encode(msg)) == msg


def _pp_frame(**kw) -> bytes:
    entries = kw.pop("entries", [])
    pb = swim_pb2.SwimMessage(seq=1)
    pp = pb.push_pull
    for k, v in kw.items():
        setattr(pp, k, v)
    for e in entries:
        pp.entries.add(**e)
    if not kw and not entries:
        pp.SetInParent()
    return pb.SerializeToString()


MALFORMED_PUSH_PULL = [
    _pp_frame(),  # step unspecified
    _pp_frame(step=4, level=0, digests=b"\0" * 4),  # unknown step
    _pp_frame(step=1, level=9, digests=b"\0" * (4 << 9)),  # more than 256 buckets
    _pp_frame(step=1, level=3, digests=b"\0" * 31),  # digests not 4 bytes per bucket
    _pp_frame(step=1, level=0, digests=b"\0" * 4, entries=[{"peer_id": b"p", "state": 1}]),  # request + entries
    _pp_frame(step=1, level=3, digests=b"\0" * 32, buckets=b"\x80"),  # request + bitmap
    _pp_frame(step=2, level=0, digests=b"\0" * 4, chunks=1),  # digests outside a request
    _pp_frame(step=2, level=0, chunk=1, chunks=1),  # chunk not < chunks
    _pp_frame(step=2, level=0, chunk=0, chunks=0),
    _pp_frame(step=3, level=0, chunk=0, chunks=65),  # too many frames
    _pp_frame(step=2, level=0, chunks=1, entries=[{"peer_id": b"p%d" % i, "state": 1} for i in range(129)]),
    _pp_frame(step=2, level=0, chunks=1, busy=True, entries=[{"peer_id": b"p", "state": 1}]),  # busy + entries
    _pp_frame(step=3, level=0, chunks=1, busy=True),  # busy is a reply
    _pp_frame(step=2, level=4, chunks=1, buckets=b"\xff"),  # bitmap of the wrong length
    _pp_frame(step=2, level=1, chunks=1, buckets=b"\x20"),  # bucket 2 of 2
    _pp_frame(step=3, level=0, chunks=1, entries=[{"peer_id": b"p", "state": 0}]),  # bad entry state
    _pp_frame(step=3, level=0, chunks=1, entries=[{"peer_id": b"", "state": 1}]),  # empty peer
    _pp_frame(step=3, level=0, chunks=1, entries=[{"peer_id": b"p", "state": 1, "signature": b"s" * 63}]),
    _pp_frame(step=3, level=0, chunks=1, entries=[{"peer_id": b"p", "state": 3, "incarnation": 2**62}]),
]


def test_malformed_push_pull_frames_are_rejected_and_counted() -> None:
    for data in MALFORMED_PUSH_PULL:
        with pytest.raises(WireError):
            decode(data)
    a = make_core("a", ["b"], config=PP)
    before = a.member(pid("b"))
    for i, data in enumerate(MALFORMED_PUSH_PULL):
        assert a.handle(0.01 * i, Received(pid("b"), data)) == []
    assert a.stats.malformed == len(MALFORMED_PUSH_PULL)
    assert a.stats.push_pulls_served == 0 and a.stats.push_pull_entries == 0
    assert a.member(pid("b")) is before  # nothing applied, not even the header


# ---------------------------------------------------------------- digests


def test_view_digest_is_incremental_and_independent_of_history() -> None:
    peers = [pid(f"m{i}") for i in range(40)]
    base = RosterBase((p, (ADDR,)) for p in peers)
    t1 = MemberTable(base)
    t2 = MemberTable()
    rng = random.Random(3)
    for p in rng.sample(peers, len(peers)):  # another order, another history
        t2.set(Member(p, State.DEAD, 4))
        t2.set(Member(p, State.ALIVE, 0, (ADDR,)))
    assert list(t1.digest.fine) == list(t2.digest.fine)
    t1.set(Member(peers[5], State.SUSPECT, 0))
    assert list(t1.digest.fine) != list(t2.digest.fine)  # suspect is not alive
    t1.set(Member(peers[5], State.ALIVE, 0))
    t1.set(Member(peers[7], State.DEAD, 0))  # tombstones do not count...
    t2.remove(peers[7])  # ... so a dead member and a forgotten one agree
    assert list(t1.digest.fine) == list(t2.digest.fine)
    fresh = ViewDigest()
    for m in t1:
        if m.live:
            fresh.toggle(m.peer_id, m.incarnation, m.state)
    assert list(fresh.fine) == list(t1.digest.fine)
    for level in range(9):
        assert len(t1.digest.coarse(level)) == 1 << level
    assert level_for(1) == 0 and level_for(100) == 4 and level_for(1000) == 7 and level_for(10**6) == 8


def test_agreeing_views_swap_digests_only() -> None:
    names = ["a", "b", "c", "d"]
    cores = {pid(n): make_core(n, [o for o in names if o != n], seed=i, config=PP) for i, n in enumerate(names)}
    a = cores[pid("a")]
    t, req = first_request(a, 2.0)
    assert len(req.message.body.digests) == 1  # 4 members: one bucket
    seen = [s for s in pump(cores, t, pid("a"), [req]) if s.message.seq == req.message.seq]
    reply = [s for s in seen if s.message.body.step is Step.REPLY]
    assert len(reply) == 1 and not reply[0].message.body.buckets and not reply[0].message.body.entries
    assert not [s for s in seen if s.message.body.step is Step.PUSH]
    assert len(encode(req.message)) < 200 and len(encode(reply[0].message)) < 200
    assert a.stats.push_pulls == 1 and a.stats.push_pull_entries == 0


# ---------------------------------------------------------------- merging


def _cores_with_diverged_views(signed: bool) -> tuple[dict[bytes, SwimCore], bytes]:
    """a holds c alive at incarnation 1 (c said so itself, signed or not); b
    still suspects c at incarnation 0 (someone's stale "dead")."""
    names = ["a", "b", "c", "d"]
    cfg = replace(PP, push_pull_timeout=0.5)
    cores = {pid(n): make_core(n, [o for o in names if o != n], seed=i, config=cfg) for i, n in enumerate(names[:2])}
    a, b = cores[pid("a")], cores[pid("b")]
    c = pid("c")
    own = signed_update(sim_signer(c) if signed else None, c, State.ALIVE, 1, (ADDR,))
    deliver(a, 0.01, c, Message(1, 1, Ping(pid("a")), (own,) if signed else ()))
    deliver(b, 0.01, pid("d"), Message(2, 0, Ack(), (MemberUpdate(c, State.DEAD, 0),)))
    assert a.member(c).incarnation == 1 and b.member(c).state is State.SUSPECT
    return cores, c


def test_a_push_pull_carries_a_signed_refutation_to_a_stale_view() -> None:
    cores, c = _cores_with_diverged_views(signed=True)
    a, b = cores[pid("a")], cores[pid("b")]
    t, req = first_request(a, 30.0, to=pid("b"), ackers={pid("b"): 0, c: 1, pid("d"): 0})
    pump(cores, t, pid("a"), [req])
    m = b.member(c)
    assert (m.state, m.incarnation) == (State.ALIVE, 1) and m.signed_now() is not None
    assert b.stats.push_pull_changes >= 1 and b.stats.unsigned == 0
    # b's stale suspicion did not travel back over a's newer word
    assert a.member(c).state is State.ALIVE and a.member(c).incarnation == 1


def test_an_unsigned_raise_in_a_push_pull_is_not_believed_but_checked() -> None:
    cores, c = _cores_with_diverged_views(signed=False)
    a, b = cores[pid("a")], cores[pid("b")]
    # a learned incarnation 1 first-hand, unsigned: it cannot vouch for it.
    assert a.member(c).signed_now() is None
    t = 0.5
    acts = b.handle(t, Received(pid("a"), Message(9, 0, PushPull(Step.REQUEST, 0, (0,)))))
    reply = sends(acts, PushPull, to=pid("a"))
    assert reply and reply[0].message.body.step is Step.REPLY
    push = Message(9, 0, PushPull(Step.REPLY, 0, (), frozenset({0}), 0, 1,
                                  (MemberUpdate(c, State.ALIVE, 1, (ADDR,)),)))
    # b never asked a: an unsolicited REPLY is dropped unread.
    assert sends(b.handle(t, Received(pid("a"), push))) == []
    assert b.stats.push_pull_unsolicited == 1 and b.member(c).incarnation == 0
    # as a PUSH of the exchange b is serving: merged like gossip -> not believed, c is asked
    # (over the connection b holds to it: a check never dials)
    b.handle(t, ConnectionOpened(c))
    push = replace(push, body=replace(push.body, step=Step.PUSH))
    acts = b.handle(t, Received(pid("a"), push))
    assert b.member(c).incarnation == 0 and b.stats.unsigned == 1
    assert sends(acts, Ping, to=c)  # ask c itself


def test_fake_members_in_a_push_pull_are_candidates_and_bounded() -> None:
    cfg = PP
    victim = make_core("v", ["b", "c"], config=cfg)
    liar = pid("liar")
    fakes = [pid(f"fake{i:05d}") for i in range(5000)]
    t = 0.5
    acts = victim.handle(t, Received(liar, Message(1, 0, PushPull(Step.REQUEST, 8, (12345,) * 256))))
    assert victim.member(liar) is not None  # the liar itself spoke: it is a member
    reply = sends(acts, PushPull, to=liar)
    assert reply and reply[0].message.body.step is Step.REPLY and not reply[0].message.body.busy
    frames = [fakes[i : i + 128] for i in range(0, len(fakes), 128)]
    for k, part in enumerate(frames):
        body = PushPull(Step.PUSH, 8, (), frozenset(range(256)), k, len(frames),
                        tuple(MemberUpdate(p, State.ALIVE, 0, (ADDR,)) for p in part))
        victim.handle(t, Received(liar, Message(1, 0, body)))
    listed = {m.peer_id for m in victim.members()}
    assert not listed & set(fakes)
    assert victim.alive_count() == 3  # b, c and the liar
    assert victim.candidates() <= cfg.max_candidates_per_gossiper
    assert victim.stats.push_pull_entries <= cfg.push_pull_max_entries
    assert victim.stats.push_pull_excess == len(frames) - cfg.push_pull_max_entries // 128
    assert victim.awareness.score == 0
    # Candidates answer pings or go: none of the fakes answers.
    run_until(victim, t + 30)
    assert not {m.peer_id for m in victim.members()} & set(fakes)
    # The same liar again at once: busy (one exchange per peer per half burst interval).
    t2 = t + 30.1
    acts = victim.handle(t2, Received(liar, Message(2, 0, PushPull(Step.REQUEST, 0, (1,)))))
    acts += victim.handle(t2, Received(liar, Message(3, 0, PushPull(Step.REQUEST, 0, (1,)))))
    assert [s.message.body.busy for s in sends(acts, PushPull)] == [False, True]


def test_serving_is_rate_limited_per_period() -> None:
    cfg = PP
    a = make_core("a", [f"p{i}" for i in range(10)], config=cfg)
    acts = []
    for i in range(6):
        acts += a.handle(0.5, Received(pid(f"p{i}"), Message(i, 0, PushPull(Step.REQUEST, 0, (i,)))))
    busy = [s.message.body.busy for s in sends(acts, PushPull) if s.message.body.step is Step.REPLY
            and s.message.body.chunk == 0]
    assert busy.count(False) == cfg.push_pull_serves_per_period and busy.count(True) == 6 - busy.count(False)
    assert a.stats.push_pull_busy == busy.count(True)
    # next period: served again
    acts = a.handle(1.5, Received(pid("p9"), Message(9, 0, PushPull(Step.REQUEST, 0, (9,)))))
    assert not sends(acts, PushPull, to=pid("p9"))[0].message.body.busy


def test_rejoin_and_join_start_a_push_pull() -> None:
    a = make_core("a", ["b", "c"], config=replace(PP, push_pull_interval=1000.0))
    b = pid("b")
    # b is declared dead by a's own suspicion timer (b never answers)...
    deliver(a, 0.01, pid("c"), Message(1, 0, Ack(), (MemberUpdate(b, State.DEAD, 0),)))
    run_until(a, 60.0)
    assert a.member(b).state is State.DEAD
    # ... and then speaks again, at a new incarnation: swap views with it now.
    own = signed_update(sim_signer(b), b, State.ALIVE, 1, (ADDR,))
    acts = deliver(a, 60.5, b, Message(2, 1, Ack(), (own,)))
    assert ("recovered", b) in events(acts)
    assert [r.to for r in requests(acts)] == [b]
    # A peer we discovered that answers our ping joins, and we swap views.
    acts = a.handle(61.0, MemberDiscovered(pid("n"), (ADDR,)))
    ping = sends(acts, Ping, to=pid("n"))[0]
    run_until(a, 66.0)  # a's exchange with b timed out meanwhile (nobody answered)
    acts = deliver(a, 66.0, pid("n"), Message(ping.message.seq, 0, Ack()))
    assert ("joined", pid("n")) in events(acts)
    assert [r.to for r in requests(acts)] == [pid("n")]


def test_a_silent_partner_is_left_alone() -> None:
    cfg = replace(PP, push_pull_timeout=2.0)
    a = make_core("a", ["b"], config=cfg)
    t, req = first_request(a, 2.0)
    assert req.to == pid("b")
    run_until(a, t + 3.5)
    assert a.stats.push_pull_silent == 1
    # b keeps acking pings, but is not asked again for candidate_backoff
    later = [r for r in requests(run_until(a, t + 30)) if r.to == pid("b")]
    assert later == []


#: Members a push/pull must change to count as views merging.
BAR = PP.push_pull_burst_changes


def _exchange_then_suspicion_min(revive: bool) -> tuple[float, float, bool]:
    """An exchange changes BAR members of b's view: brings them back from
    left (``revive``), or accuses them. Then b hears one more accusation:
    (its suspicion's minimum, b's normal minimum, whether b's merge window
    opened)."""
    others = [f"m{k}" for k in range(BAR + 2)]
    names = ["a", "b", *others]
    cfg = replace(PP, push_pull_timeout=0.5)
    cores = {pid(n): make_core(n, [o for o in names if o != n], seed=i, config=cfg) for i, n in enumerate(names[:2])}
    a, b = cores[pid("a")], cores[pid("b")]
    moved = [pid(o) for o in others[:BAR]]
    for k, m in enumerate(moved):
        if revive:
            # b heard each say it leaves; a heard each come back (signed)
            deliver(b, 0.01, m, Message(k, 0, Ack(), (MemberUpdate(m, State.LEFT, 0),)))
            deliver(a, 0.01, m, Message(k, 1, Ack(), (signed_update(sim_signer(m), m, State.ALIVE, 1, (ADDR,)),)))
        else:
            deliver(a, 0.01, pid(others[-1]), Message(k, 0, Ack(), (MemberUpdate(m, State.SUSPECT, 0, (), pid(others[-1])),)))
    ackers = {pid(n): (1 if revive and pid(n) in moved else 0) for n in names}
    t, req = first_request(a, 30.0, to=pid("b"), ackers=ackers)
    before, window = b.stats.push_pull_changes, b._merging_until  # noqa: SLF001
    pump(cores, t + 0.01, pid("a"), [req])
    assert b.stats.push_pull_changes - before >= BAR
    opened = b._merging_until > max(window, t)  # noqa: SLF001 — this exchange opened (or extended) it
    accused = pid(others[-2])
    deliver(b, t + 0.02, pid(others[-1]), Message(99, 0, Ack(), (MemberUpdate(accused, State.SUSPECT, 0, (), pid(others[-1])),)))
    return b._suspicions[accused].min, b.config.suspicion_min(len(names)), opened  # noqa: SLF001


def test_an_exchange_bringing_members_back_from_the_dead_lengthens_suspicions() -> None:
    """Views of a healed partition merging: accusations in flight are often stale."""
    got, steady, opened = _exchange_then_suspicion_min(revive=True)
    assert opened and got == 2 * steady


@pytest.mark.parametrize("strangers, opens", [(BAR, True), (BAR - 1, False)])
def test_a_join_whose_exchange_names_many_strangers_opens_a_merge_window(strangers: int, opens: bool) -> None:
    """Two networks meeting: a joins b, whose view is full of members a never
    heard of. They change nothing in a's view until each answers a's ping
    (candidates), yet this is the merge a window is for. A join alone opens
    none (since 2026-12-05); without counting the strangers, no window ever
    opened in such a merge, and two 100-member clusters meeting through one
    contact were whole after 132 s in 1 of 10 seeds (a member waited for the
    periodic push/pull); counting them, 15-16 s in all 10."""
    theirs = [f"x{k}" for k in range(strangers)]
    cfg = replace(PP, push_pull_interval=1000.0)
    a = make_core("a", ["m0", "m1", "m2"], seed=1, config=cfg)
    b = make_core("b", ["a", *theirs], seed=2, config=cfg)
    cores = {pid("a"): a, pid("b"): b}
    acts = a.handle(0.01, MemberDiscovered(pid("b"), (ADDR,)))
    ping = sends(acts, Ping, to=pid("b"))[0]
    window = a._merging_until  # noqa: SLF001
    acts = deliver(a, 0.02, pid("b"), Message(ping.message.seq, 0, Ack()))
    assert ("joined", pid("b")) in events(acts) and a._merging_until == window  # noqa: SLF001 — the join alone: none
    pump(cores, 0.03, pid("a"), requests(acts))
    assert a.candidates() == strangers  # each waits for a's ping
    assert (a._merging_until > window) is opens  # noqa: SLF001


def test_a_merge_windows_bursts_go_to_members_we_hold_connections_to() -> None:
    """While views merge, push/pull every burst interval: with the members
    whose connections we have held longest (12 by default), which costs no
    dial (after a heal at 100 nodes on 2 cores the bursts' draws across asked
    for 195 new connections in 20 s) and which a peer cannot join by opening
    connections. Once none of those held may be asked, everyone."""
    others = [f"m{k:02d}" for k in range(40)]
    cfg = replace(PP, push_pull_interval=1000.0, push_pull_burst_interval=0.5, push_pull_timeout=0.2)
    a = make_core("a", others, seed=1, config=cfg)
    held = [pid(o) for o in others[5:21]]  # 16 connections, oldest first
    for i, p in enumerate(held):
        a.handle(0.001 * (i + 1), ConnectionOpened(p))
    a._pp_burst(healing=False)  # noqa: SLF001 — a merge window opens (as after an exchange that changed much)
    t, seen = 0.01, []
    for _ in range(12):
        t, req = first_request(a, t + 30)
        assert req.why == "burst" and t < a._merging_until  # noqa: SLF001
        seen.append(req.to)
    assert sorted(seen) == sorted(held[:12])  # each once (silent, each is then held back)
    t, req = first_request(a, t + 30)
    assert req.to not in held[:12] and t < a._merging_until and req.why == "burst"  # noqa: SLF001 — anyone now
    end = a._merging_until  # noqa: SLF001
    while t < end:
        t, req = first_request(a, t + 2000)
    assert req.why == "periodic"  # the window over: the periodic exchange, among everyone


def _exchange_naming(a: SwimCore, b_members: list[str], t: float, seed: int = 2) -> bool:
    """b (knowing ``b_members``) answers a's ping, a joins it and swaps views
    with it at ``t``: whether that opened (or extended) a's merge window."""
    b = make_core("b" + str(seed), ["a", *b_members], seed=seed, config=a.config)
    bp = pid("b" + str(seed))
    acts = a.handle(t, MemberDiscovered(bp, (ADDR,)))
    ping = sends(acts, Ping, to=bp)[0]
    acts = deliver(a, t + 0.001, bp, Message(ping.message.seq, 0, Ack()))
    window = a._merging_until  # noqa: SLF001
    pump({pid("a"): a, bp: b}, t + 0.002, pid("a"), requests(acts))
    return a._merging_until > window  # noqa: SLF001


def test_strangers_count_once_and_not_while_we_wait_on_them() -> None:
    """Only new candidates count toward a window: strangers we already wait
    on, or hold back for not answering (unreachable from here), named again
    by every partner, reopened a window on every exchange (SWIM's simulator,
    60 members, one unable to reach 10: 300 push/pulls in 300 s instead of
    51); and a name repeated in one exchange counts once."""
    cfg = replace(PP, push_pull_interval=1000.0, candidate_pings_per_period=0)
    a = make_core("a", ["m0", "m1", "m2"], seed=1, config=cfg)
    strangers = [f"x{k}" for k in range(BAR)]
    assert _exchange_naming(a, strangers, 0.01, seed=2)
    run_until(a, 60.0)  # the window is long over; the candidates still wait (no pings)
    assert a.candidates() == BAR
    assert not _exchange_naming(a, strangers, 60.01, seed=3)  # the same names again: nothing new
    fresh = make_core("a", ["m0", "m1", "m2"], seed=1, config=cfg)
    entries = tuple(MemberUpdate(pid("x0"), State.ALIVE, 0, (ADDR,)) for _ in range(BAR))
    assert fresh._merge(pid("m0"), entries, [])[0] == 0  # noqa: SLF001 — one stranger, named BAR times


@pytest.mark.parametrize("strangers, opens", [(16, True), (12, False)])
def test_in_a_large_view_one_partner_full_of_strangers_still_opens_a_window(strangers: int, opens: bool) -> None:
    """The bar grows as N/16 (400 members: 25), so that a few newcomers named
    in a busy network's views do not open windows on the members who have
    not admitted them yet (200 members, 60 newcomers in 2 s: 6,211
    push/pulls and every member in a window, 1,502 and none since); but one
    partner can make us take at most max_candidates_per_gossiper (16)
    candidates, so the bar stops there."""
    cfg = replace(PP, push_pull_interval=1000.0, candidate_pings_per_period=0)
    ours = [f"m{k}" for k in range(400)]
    a = make_core("a", ours, seed=1, config=cfg)
    assert cfg.max_candidates_per_gossiper == 16 and (a.alive_count() + 1) // 16 > 16
    theirs = tuple(MemberUpdate(pid(f"x{k}"), State.ALIVE, 0, (ADDR,)) for k in range(strangers))
    changes, _ = a._merge(pid("m0"), theirs, [])  # noqa: SLF001
    assert changes == (strangers if opens else 0)


def test_an_exchange_of_many_accusations_does_not_lengthen_suspicions() -> None:
    """The other view has seen a crash of many: push/pull in bursts, but a
    crash is decided as fast as ever (before 2026-12-04, any exchange that
    changed BAR members doubled the suspicion minimum)."""
    got, steady, opened = _exchange_then_suspicion_min(revive=False)
    assert opened and got == steady


# ------------------------------------------------------------ simulation


def partition_heal(n: int, seed: int, config: SwimConfig, cut: int, duration: float, window: float):
    obs = Observer()
    sim = SwimSimulation(n, seed=seed, config=config, on_event=obs)
    obs.sim = sim
    heal = 2.0 + duration
    sim.at(2.0, lambda: sim.network.groups.update({i: 1 for i in range(cut)}))
    sim.at(heal, lambda: sim.network.groups.clear())
    sim.run_until(heal)
    bad_at_heal = obs.bad_views
    t = heal
    while t < heal + window and obs.bad_views:
        t += 0.5
        sim.run_until(t)
    return sim, obs, bad_at_heal, heal


@pytest.mark.slow  # ~20-40 s of CPU: two 200-member clusters over ~30 s of virtual time
def test_partition_of_200_merges_within_seconds_only_with_push_pull() -> None:
    """200 members, 20 cut off for 20 s (each side declares the other dead).
    With push/pull every view has every member alive within BOUND seconds of
    the heal (measured: 4.8 s); the old mechanism alone (reconnect pings +
    gossip) still has views to fix then (it needs 49 s). Measured before
    2026-12-06, when a core in poor health did not yet slow its verdicts and
    gossip; the control runs with both off (see below)."""
    bound = 10.0
    sim, obs, bad, heal = partition_heal(200, 5, SwimConfig(), 20, 20.0, bound)
    assert bad > 2000  # the sides really had split
    assert obs.bad_views == 0 and obs.last_bad_zero - heal < bound
    assert all(core.member(p).state is State.ALIVE for core in sim.cores for p in sim.ids if p != core.local_id)
    assert sum(c.stats.push_pulls for c in sim.cores) > 0

    # The old mechanism as it was. A core in poor health (probes across the
    # cut unanswered, helpers silent) now waits longer to convict and gossips
    # less often; with both, and with the slower gossip alone, the views of
    # this run were whole within the bound without push/pull too (seed 5).
    old_cfg = SwimConfig(push_pull_interval=0.0, awareness_slows_verdicts=False, awareness_slows_gossip=False)
    old, obs_old, bad_old, _ = partition_heal(200, 5, old_cfg, 20, 20.0, bound)
    assert bad_old > 2000 and obs_old.bad_views > 0
    assert sum(c.stats.push_pulls for c in old.cores) == 0


def test_stable_cluster_push_pull_costs_digests_only() -> None:
    """No change, no entries: exchanges between agreeing views are one small
    frame each way, and none starts a burst."""
    cfg = SwimConfig(push_pull_interval=5.0)  # x2 at 51 members: every 10 s
    sim = SwimSimulation(50, seed=9, config=cfg)
    sim.run_until(60.0)
    st = [c.stats for c in sim.cores]
    assert sum(s.push_pulls for s in st) >= 50 * 60 / 10 * 0.8
    assert sum(s.push_pull_entries for s in st) == 0
    assert sum(s.push_pull_busy + s.push_pull_silent + s.push_pull_unsolicited for s in st) == 0
    pushes = sum(s.push_pulls for s in st)  # each: a REQUEST and an empty REPLY (a few still in flight)
    assert 2 * pushes - 50 <= sim.traffic.by_kind["PushPull"] <= 2 * pushes
    assert sim.traffic.bytes_by_kind["PushPull"] / sim.traffic.by_kind["PushPull"] < 200  # bytes per frame


def test_encoded_size_is_exact() -> None:
    """The simulator sizes frames with wire.encoded_size instead of encoding them."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from agentp2p.protocol.swim import Nack, PingReq
    from agentp2p.protocol.swim.wire import encoded_size

    peers = st.binary(min_size=1, max_size=40)
    upd = st.builds(
        MemberUpdate, peer_id=peers, state=st.sampled_from(list(State)),
        incarnation=st.one_of(st.integers(0, 300), st.integers(0, 2**62 - 1)),
        addrs=st.lists(st.binary(min_size=1, max_size=200), max_size=3).map(tuple),
        origin=st.one_of(st.just(b""), peers), signature=st.one_of(st.just(b""), st.just(b"s" * 64)),
    )
    level = st.integers(0, 8)
    pushpull = st.one_of(
        level.flatmap(lambda lv: st.builds(PushPull, step=st.just(Step.REQUEST), level=st.just(lv),
                                           digests=st.lists(st.integers(0, 2**32 - 1), min_size=1 << lv,
                                                            max_size=1 << lv).map(tuple))),
        level.flatmap(lambda lv: st.builds(
            PushPull, step=st.sampled_from([Step.REPLY, Step.PUSH]), level=st.just(lv),
            buckets=st.frozensets(st.integers(0, (1 << lv) - 1), max_size=5),
            chunk=st.integers(0, 3), chunks=st.integers(4, 64), entries=st.lists(upd, max_size=5).map(tuple))),
    )
    bodies = st.one_of(st.builds(Ping, target=st.one_of(st.just(b""), peers)),
                       st.builds(PingReq, target=peers, target_addrs=st.lists(peers, max_size=2).map(tuple),
                                 timeout=st.floats(0, 100)),
                       st.just(Ack()), st.just(Nack()), pushpull)
    msgs = st.builds(Message, seq=st.integers(0, 2**64 - 1), incarnation=st.integers(0, 2**62),
                     body=bodies, updates=st.lists(upd, max_size=4).map(tuple))

    @given(msgs)
    @settings(max_examples=300, deadline=None)
    def check(msg: Message) -> None:
        assert encoded_size(msg) == len(encode(msg))

    check()
