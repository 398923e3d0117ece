"""Malformed and lying SWIM frames: never crash, never keep a live node dead."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentp2p.pb import swim_pb2
from agentp2p.protocol.swim import (
    MAX_INCARNATION,
    Ack,
    Gossip,
    MemberUpdate,
    Message,
    Nack,
    Ping,
    PingReq,
    Received,
    State,
    WireError,
    decode,
    encode,
)
from tests.protocol.swim.swimhelpers import deliver, events, make_core, next_tick, pid, run_until, sends

PEERS = [pid(n) for n in ("a", "b", "c", "x", "liar")]

peer_ids = st.one_of(st.sampled_from(PEERS), st.binary(min_size=1, max_size=40))
updates = st.builds(
    MemberUpdate,
    peer_id=peer_ids,
    state=st.sampled_from(list(State)),
    incarnation=st.one_of(st.integers(0, 5), st.integers(0, MAX_INCARNATION - 1)),
    addrs=st.lists(st.binary(min_size=1, max_size=30), max_size=3).map(tuple),
    origin=st.one_of(st.just(b""), peer_ids),
)
bodies = st.one_of(
    st.builds(Ping, target=st.one_of(st.just(b""), peer_ids)),
    st.builds(PingReq, target=peer_ids, target_addrs=st.just(()), timeout=st.floats(0, 60)),
    st.just(Ack()),
    st.just(Nack()),
    st.just(Gossip()),
)
messages = st.builds(
    Message,
    seq=st.integers(0, 2**64 - 1),
    incarnation=st.integers(0, 10),
    body=bodies,
    updates=st.lists(updates, max_size=8).map(tuple),
)


# ------------------------------------------------------------ wire


@given(st.binary(max_size=300))
@settings(max_examples=400)
def test_decode_returns_a_message_or_raises_wire_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except WireError:
        return
    assert isinstance(msg, Message)
    assert decode(encode(msg)) == msg


@given(messages)
@settings(max_examples=200)
def test_wire_round_trip(msg: Message) -> None:
    msg2 = decode(encode(msg))
    assert msg2.seq == msg.seq and msg2.updates == msg.updates and type(msg2.body) is type(msg.body)


def test_decode_rejects_out_of_bounds_frames() -> None:
    def frame(**kw) -> bytes:
        pb = swim_pb2.SwimMessage(seq=1, **kw)
        pb.ack.SetInParent()
        return pb.SerializeToString()

    bad = [
        b"\xff\xff\xff",
        swim_pb2.SwimMessage(seq=1).SerializeToString(),  # no body
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"p", state=0)]),  # unspecified state
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"", state=1)]),  # empty peer
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"p" * 200, state=1)]),
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"p", state=3, incarnation=MAX_INCARNATION)]),
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"p", state=1, addrs=[b"a"] * 9)]),
        frame(updates=[swim_pb2.MemberUpdate(peer_id=b"p", state=1)] * 65),
        frame(incarnation=MAX_INCARNATION + 1),
        b"\x00" * (64 * 1024 + 1),
    ]
    for data in bad:
        try:
            decode(data)
        except WireError:
            continue
        raise AssertionError(f"accepted {data[:40]!r}")


def test_malformed_bytes_are_counted_not_raised() -> None:
    a = make_core("a", ["b"])
    assert a.handle(0.1, Received(pid("b"), b"\x0a\xff\xff garbage")) == []
    assert a.stats.malformed == 1


# ------------------------------------------------------------ lying peers


@given(st.lists(st.tuples(st.sampled_from(PEERS[1:]), messages), max_size=25))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_arbitrary_frames_never_crash_and_a_live_node_ends_alive(frames) -> None:
    a = make_core("a", ["b", "c", "x"])
    x = make_core("x", ["a", "b", "c"])
    t = 0.0
    for sender, msg in frames:
        t += 0.05
        a.handle(t, Received(sender, msg))
        x.handle(t, Received(sender, msg))
    # Whatever the liars said, a few honest exchanges between x and a restore x.
    for _ in range(3):
        t += 0.1
        for s in sends(a.handle(t, Received(pid("x"), Message(1, x.incarnation, Ping(pid("a")))))):
            if s.to == pid("x"):
                x.handle(t, Received(pid("a"), s.message))
    t += 0.1
    a.handle(t, Received(pid("x"), Message(2, x.incarnation, Ping(pid("a")))))
    assert a.member(pid("x")).state is State.ALIVE
    assert x.incarnation <= MAX_INCARNATION
    run_until(a, t + 5)  # timers still sane


def test_forged_death_of_a_live_member_is_refuted() -> None:
    a = make_core("a", ["b", "x", "liar"])
    x = make_core("x", ["a", "b", "liar"])
    forged = MemberUpdate(pid("x"), State.DEAD, 0)
    acts = deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (forged,)))
    # Someone else's "dead" only starts *our* suspicion: x has time to refute.
    assert events(acts) == [("suspect", pid("x"))]
    assert a.stats.dead_rumours == 1
    # x hears the same rumour (any route) and refutes
    deliver(x, 0.2, pid("liar"), Message(1, 0, Ack(), (forged,)))
    assert x.incarnation == 1
    acts = deliver(a, 0.3, pid("x"), Message(7, x.incarnation, Ping(pid("a"))))
    assert ("recovered", pid("x")) in events(acts)
    # replaying the old lie changes nothing any more
    assert events(deliver(a, 0.4, pid("liar"), Message(2, 0, Ack(), (forged,)))) == []
    assert a.member(pid("x")).state is State.ALIVE


def test_forged_suspicion_about_self_is_refuted_even_at_higher_incarnation() -> None:
    x = make_core("x", ["a", "liar"])
    deliver(x, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.SUSPECT, 40),)))
    assert x.incarnation == 41
    _, acts = next_tick(x)
    assert all(s.message.incarnation == 41 for s in sends(acts))


def test_rumours_cannot_poison_a_strangers_incarnation() -> None:
    a = make_core("a", ["liar"])
    # a never met x: a forged alive at a huge incarnation only makes x a candidate ...
    deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.ALIVE, 10**9),)))
    deliver(a, 0.2, pid("liar"), Message(2, 0, Ack(), (MemberUpdate(pid("x"), State.DEAD, 10**9),)))
    assert a.member(pid("x")) is None and a.is_candidate(pid("x"))
    # ... and x's own (authenticated) word admits it at its real incarnation.
    acts = deliver(a, 0.3, pid("x"), Message(3, 2, Ping(pid("a"))))
    assert ("joined", pid("x")) in events(acts)
    assert a.member(pid("x")).incarnation == 2 and not a.is_candidate(pid("x"))


def test_a_view_far_ahead_is_reset_by_the_members_own_word() -> None:
    a = make_core("a", ["liar"])
    deliver(a, 0.1, pid("x"), Message(1, 10**9, Ping(pid("a"))))  # x, in a previous life
    deliver(a, 0.2, pid("x"), Message(2, 10**9, Ack(), (MemberUpdate(pid("x"), State.DEAD, 10**9),)))
    assert a.member(pid("x")).state is State.DEAD
    # x restarted without its incarnation: its own word resets the view.
    acts = deliver(a, 0.3, pid("x"), Message(3, 2, Ping(pid("a"))))
    assert ("recovered", pid("x")) in events(acts)
    assert a.member(pid("x")).incarnation == 2


def test_implausible_incarnation_jump_is_ignored() -> None:
    a = make_core("a", ["x", "liar"])
    huge = a.config.max_incarnation_jump + 5
    acts = deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.DEAD, huge),)))
    assert events(acts) == []
    assert a.stats.ahead == 1  # an accusation beyond anything x announced
    assert a.member(pid("x")).state is State.ALIVE


def test_accusations_at_the_incarnation_cap_are_rejected() -> None:
    a = make_core("a", ["x", "liar"])
    deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("x"), State.DEAD, MAX_INCARNATION),)))
    assert a.member(pid("x")).state is State.ALIVE and a.stats.malformed == 1


def test_rumours_about_strangers_do_not_create_members() -> None:
    a = make_core("a", ["liar"])
    deliver(a, 0.1, pid("liar"), Message(1, 0, Ack(), (MemberUpdate(pid("ghost"), State.DEAD, 3),)))
    assert a.member(pid("ghost")) is None


def test_forged_acks_and_nacks_do_not_count() -> None:
    a = make_core("a", ["b", "c", "d", "liar"])
    t, acts = next_tick(a)
    (ping,) = sends(acts, Ping)
    liar = pid("liar") if ping.to != pid("liar") else pid("b")
    deliver(a, t + 0.1, liar, Message(ping.message.seq, 0, Ack()))
    deliver(a, t + 0.1, liar, Message(ping.message.seq, 0, Nack()))
    acts = run_until(a, t + a.config.probe_interval)
    # ... and one more period for late Nacks, stretched by the awareness the silence raised
    end = t + a.config.probe_interval * (a.awareness.score + 2) + 0.01
    (nxt,) = [p for p in sends(acts, Ping) if p.to != ping.to]  # the next probe: answered
    deliver(a, t + a.config.probe_interval + 0.01, nxt.to, Message(nxt.message.seq, 0, Ack()))
    acts += run_until(a, end)
    # Neither counted: a believed Ack would have ended the probe, a believed
    # Nack would have started a suspicion; all helpers silent spares the target.
    assert ("suspect", ping.to) not in events(acts)
    assert a.stats.spared_silent == 1 and a.awareness.score == a.config.indirect_checks - 1  # +3, then -1 (next Ack)
    assert a.stats.unsolicited >= 1


def test_ping_for_someone_else_and_frames_from_self_are_dropped() -> None:
    a = make_core("a", ["b"])
    assert not sends(deliver(a, 0.1, pid("b"), Message(1, 0, Ping(pid("zzz")))))
    assert not sends(deliver(a, 0.1, pid("a"), Message(1, 0, Ping(pid("a")))))
    assert a.stats.misdirected == 2


def test_ping_req_flood_is_bounded() -> None:
    """At most max_pending_indirect pings on others' behalf; a PingReq past
    them is refused with a Nack to its sender (no dial, nothing to the
    target): silence would spare the target at the asker
    (suspect_when_helpers_silent), so filling our slots could hide a crash."""
    a = make_core("a", ["b", "t"])
    pings, nacks = [], []
    for i in range(500):
        acts = deliver(a, 0.1, pid("b"), Message(i, 0, PingReq(pid("t"), (), 30.0)))
        pings += sends(acts, Ping, to=pid("t"))
        nacks += sends(acts, Nack)
    cap = a.config.max_pending_indirect
    assert len(pings) == cap
    assert [n.message.seq for n in nacks] == list(range(cap, 500))
    assert all(n.to == pid("b") and not n.dial for n in nacks)
    assert a.stats.dropped_indirect == 500 - cap
