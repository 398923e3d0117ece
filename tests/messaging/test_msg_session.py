"""Session core behaviours one at a time: window, backoff, deadlines, ACK policy, bad input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentp2p.messaging.events import (
    Acked,
    Connected,
    Consumed,
    Deliver,
    Failed,
    FrameReceived,
    Inspect,
    Inspected,
    Rejected,
    Send,
    TimerFired,
    WindowOpen,
)
from agentp2p.messaging.rtt import RttEstimator
from agentp2p.messaging.sender import MessageTooLarge
from agentp2p.messaging.session import ConnState, Session, SessionConfig
from agentp2p.messaging.wire import decode_frame
from agentp2p.messaging.window import WindowFull
from agentp2p.pb.msg_pb2 import Ack, Data, Envelope, Frame, SeqRange
from tests.messaging.msgsim import LinkProfile, Sim, make_envelopes

SID_A, SID_B = b"A" * 16, b"B" * 16


def open_pair(cfg: SessionConfig | None = None) -> tuple[Session, Session]:
    """Two sessions through the Hello exchange, frames handed over directly."""
    a, b = Session(SID_A, cfg), Session(SID_B, cfg)
    a.handle(0.0, Connected())
    b.handle(0.0, Connected())
    b.handle(0.0, FrameReceived(decode_frame(a.transmit(0.0))))
    a.handle(0.0, FrameReceived(decode_frame(b.transmit(0.0))))
    assert a.state is b.state is ConnState.OPEN
    return a, b


def pump(src: Session, dst: Session, now: float) -> list:
    actions = []
    while (f := src.transmit(now)) is not None:
        actions += dst.handle(now, FrameReceived(decode_frame(f)))
    return actions


def test_send_window_refuses_then_reopens_on_ack() -> None:
    a, b = open_pair(SessionConfig(window_messages=4, auto_consume=True, ack_every=1))
    for env in make_envelopes(4):
        a.handle(0.0, Send(env))
    assert not a.can_send(100)
    with pytest.raises(WindowFull):
        a.handle(0.0, Send(make_envelopes(1, prefix="x")[0]))
    pump(a, b, 0.01)
    actions = pump(b, a, 0.02)
    assert sum(isinstance(x, Acked) for x in actions) == 4
    assert any(isinstance(x, WindowOpen) for x in actions)
    assert a.can_send(100)


def test_peer_receive_window_caps_our_window() -> None:
    a = Session(SID_A, SessionConfig(window_messages=100))
    b = Session(SID_B, SessionConfig(receive_window=3))
    a.handle(0, Connected()), b.handle(0, Connected())
    a.handle(0, FrameReceived(decode_frame(b.transmit(0))))
    for env in make_envelopes(3):
        a.handle(0, Send(env))
    assert not a.can_send(1)


def test_oversized_message_is_refused() -> None:
    a, _ = open_pair(SessionConfig(max_message_bytes=10))
    with pytest.raises(MessageTooLarge):
        a.handle(0, Send(Envelope(id="big", payload=b"x" * 11)))


def test_retransmission_timeout_backs_off_exponentially() -> None:
    a, _ = open_pair(SessionConfig(initial_rto=1.0))
    a.handle(0.0, Send(make_envelopes(1)[0]))
    assert a.transmit(0.0) is not None  # sent, and lost: nobody answers
    times = []
    now = 0.0
    for _ in range(5):
        now = a.next_timer()
        times.append(now)
        a.handle(now, TimerFired())
        assert a.transmit(now) is not None  # the retransmission
    gaps = [round(t1 - t0, 6) for t0, t1 in zip([0.0, *times], times)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert a.sender.stats.retransmitted == 5


def test_rtt_estimator_follows_rfc6298_and_karn_resets_backoff() -> None:
    r = RttEstimator(initial_rto=1.0, min_rto=0.0, granularity=0.0)
    r.sample(0.1)
    assert r.srtt == pytest.approx(0.1) and r.rto == pytest.approx(0.1 + 4 * 0.05)
    r.on_timeout()
    r.on_timeout()
    assert r.rto == pytest.approx(4 * 0.3)
    r.sample(0.1)
    assert r.backoff == 0 and r.rto == pytest.approx(0.1 + 4 * 0.0375)


def test_deadline_fails_message_and_peer_skips_it() -> None:
    a, b = open_pair(SessionConfig(auto_consume=True))
    e1, e2, e3 = make_envelopes(3)
    a.handle(0.0, Send(e1, deadline=1.0))
    a.transmit(0.0)  # lost
    a.handle(0.0, Send(e2, deadline=100.0))
    while True:
        now = a.next_timer()
        actions = a.handle(now, TimerFired())
        if any(isinstance(x, Failed) for x in actions):
            break
        a.transmit(now)  # retransmissions keep getting lost
    assert [x.envelope.id for x in actions if isinstance(x, Failed)] == ["m0"]
    a.handle(now, Send(e3))
    delivered = [x.envelope.id for x in pump(a, b, now) if isinstance(x, Deliver)]
    assert delivered == ["m1", "m2"]  # m0 abandoned; the others are not held back behind it
    assert b.receiver.stats.skipped == 1


def test_ack_waits_for_consumption() -> None:
    a, b = open_pair(SessionConfig(ack_every=1))
    a.handle(0.0, Send(make_envelopes(1)[0]))
    [deliver] = [x for x in pump(a, b, 0.0) if isinstance(x, Deliver)]
    assert not [x for x in pump(b, a, 0.001) if isinstance(x, Acked)]  # delivered, not consumed
    b.handle(0.002, Consumed(deliver.envelope.session_id, deliver.envelope.seq))
    assert [x.envelope.id for x in pump(b, a, 0.003) if isinstance(x, Acked)] == ["m0"]


def test_delayed_ack_goes_out_when_the_timer_fires() -> None:
    a, b = open_pair(SessionConfig(auto_consume=True, ack_delay=0.005, ack_every=100))
    a.handle(0.0, Send(make_envelopes(1)[0]))
    pump(a, b, 0.0)
    assert b.transmit(0.001) is None  # delayed
    assert b.next_timer() == pytest.approx(0.005)
    b.handle(0.005, TimerFired())
    assert [x for x in pump(b, a, 0.005) if isinstance(x, Acked)]


def test_inspect_rejections_are_skipped_not_blocking() -> None:
    a = Session(SID_A, SessionConfig(auto_consume=True))
    b = Session(SID_B, SessionConfig(auto_consume=True), inspect=True)
    for s in (a, b):
        s.handle(0, Connected())
    b.handle(0, FrameReceived(decode_frame(a.transmit(0))))
    a.handle(0, FrameReceived(decode_frame(b.transmit(0))))
    for env in make_envelopes(3):
        a.handle(0, Send(env))
    actions = pump(a, b, 0)
    [ask] = [x for x in actions if isinstance(x, Inspect)]
    assert [e.id for e in ask.envelopes] == ["m0", "m1", "m2"] and not any(isinstance(x, Deliver) for x in actions)
    actions = b.handle(0, Inspected(tuple("forged" if e.id == "m1" else None for e in ask.envelopes)))
    assert [x.envelope.id for x in actions if isinstance(x, Deliver)] == ["m0", "m2"]
    assert [(x.envelope.id, x.reason) for x in actions if isinstance(x, Rejected)] == [("m1", "forged")]
    assert b.receiver.stats.rejected == 1


def test_nonsense_from_peer_is_counted_and_ignored() -> None:
    a, b = open_pair()
    a.handle(0.0, Send(make_envelopes(1)[0]))
    pump(a, b, 0.0)
    junk = [
        Frame(ack=Ack(session_id=b"other", cumulative=10**9)),
        Frame(ack=Ack(session_id=SID_A, cumulative=10**9, selective=[SeqRange(start=5, end=10**12)])),
        Frame(data=Data(session_id=b"nope", low_seq=1, messages=[Envelope(id="z", seq=1)])),
        Frame(data=Data(session_id=SID_B, low_seq=1, messages=[Envelope(id="z", session_id=b"x", seq=7)])),
        Frame(),
    ]
    for f in junk:
        a.handle(0.1, FrameReceived(f))
    # The absurd ACK acknowledges at most what was really sent.
    assert a.sender.unacked == 0 and a.sender.next_seq == 2
    assert a.receiver.stats.foreign_session == 1 and a.receiver.stats.malformed == 1


def test_frames_before_hello_are_ignored() -> None:
    a = Session(SID_A)
    a.handle(0, Connected())
    assert a.handle(0, FrameReceived(Frame(ack=Ack(session_id=SID_A, cumulative=1)))) == []
    assert a.stats.unexpected_frames == 1


def test_wants_connection_while_unacked_and_disconnected() -> None:
    a = Session(SID_A)
    assert not a.wants_connection
    a.handle(0, Send(make_envelopes(1)[0]))
    assert a.wants_connection


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 120),
    loss=st.floats(0, 0.5),
    dup=st.floats(0, 0.3),
    jitter=st.floats(0, 0.05),
    window=st.integers(1, 32),
    frame_bytes=st.sampled_from([1, 300, 4096]),
    flaps=st.lists(st.floats(0.01, 3.0), max_size=3),
    consume_explicitly=st.booleans(),
)
def test_any_small_schedule_delivers_exactly_once_in_order(
    seed: int,
    n: int,
    loss: float,
    dup: float,
    jitter: float,
    window: int,
    frame_bytes: int,
    flaps: list[float],
    consume_explicitly: bool,
) -> None:
    rng = random.Random(seed)
    cfg = SessionConfig(
        window_messages=window, receive_window=window, min_rto=0.02, auto_consume=not consume_explicitly
    )
    a, b = Session(rng.randbytes(16), cfg), Session(rng.randbytes(16), cfg)
    sim = Sim(rng, a, b, LinkProfile(loss=loss, duplicate=dup, delay=0.005, jitter=jitter), frame_bytes=frame_bytes)
    sim.connect()
    msgs = make_envelopes(n, size=rng.choice([1, 100, 700]))
    back = make_envelopes(n // 3, prefix="r")
    sim.queue_messages("a", msgs)
    sim.queue_messages("b", back)
    for t in sorted(flaps):
        sim.at(t, "call", "a", sim.disconnect)
        sim.at(t + 0.05, "call", "a", sim.connect)
    sim.run(until=lambda: len(sim.nodes["a"].acked) == n and len(sim.nodes["b"].acked) == len(back))
    assert [e.id for e in sim.nodes["b"].delivered] == [e.id for e in msgs]
    assert [e.id for e in sim.nodes["a"].delivered] == [e.id for e in back]
    assert sim.nodes["a"].acked == [e.id for e in msgs]
