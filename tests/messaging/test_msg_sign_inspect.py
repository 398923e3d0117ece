"""The session core asks (Sign, Inspect) instead of calling out, and behaves as before.

Signing and vetting need what the sans-IO core must not hold (our key, the
node-wide inbox, the replay guard): the core returns the question as an
action and takes the answer as an event. These tests pin down the
protocol of those questions, then run the full simulation with both on.
"""

from __future__ import annotations

import random

import pytest

from agentp2p.messaging.events import (
    INBOX_FULL,
    Accepted,
    Connected,
    Consumed,
    Deliver,
    FrameReceived,
    Inspect,
    Inspected,
    Notice,
    Released,
    Send,
    Sign,
    Signed,
    TimerFired,
    Transmit,
)
from agentp2p.messaging.receiver import held_size
from agentp2p.messaging.session import ConnState, Session, SessionConfig
from agentp2p.messaging.wire import decode_frame
from agentp2p.pb.msg_pb2 import Data, Envelope, Frame
from tests.messaging.msgsim import LinkProfile, Sim, make_envelopes

SID_A, SID_B = b"A" * 16, b"B" * 16


def open_pair(a: Session, b: Session) -> None:
    for s in (a, b):
        s.handle(0.0, Connected())
    b.handle(0.0, FrameReceived(decode_frame(a.transmit(0.0))))
    a.handle(0.0, FrameReceived(decode_frame(b.transmit(0.0))))
    assert a.state is b.state is ConnState.OPEN


def data_frames(src: Session, now: float) -> list[Frame]:
    out = []
    while (f := src.transmit(now)) is not None:
        frame = decode_frame(f)
        if frame.WhichOneof("body") == "data":
            out.append(frame)
    return out


def test_a_signing_session_sends_a_message_only_once_signed_and_in_seq_order() -> None:
    a, b = Session(SID_A, sign=True), Session(SID_B, SessionConfig(auto_consume=True))
    open_pair(a, b)
    m0, m1 = make_envelopes(2)
    [ask0] = a.handle(0.0, Send(m0))
    [ask1] = a.handle(0.0, Send(m1))
    assert isinstance(ask0, Sign) and isinstance(ask1, Sign)
    assert (ask0.envelope.seq, ask1.envelope.seq) == (1, 2) and ask0.envelope.session_id == SID_A
    assert a.window.messages == 2  # counted from the start: WindowFull is still raised at Send
    # The second signature first: nothing may overtake the unsigned first message.
    assert a.handle(0.0, Signed(2, b"sig-1")) == [Accepted(m1), Transmit()]
    assert data_frames(a, 0.0) == []
    assert a.handle(0.0, Signed(1, b"sig-0")) == [Accepted(m0), Transmit()]
    [frame] = data_frames(a, 0.0)
    assert [(e.id, e.seq, e.signature) for e in frame.data.messages] == [("m0", 1, b"sig-0"), ("m1", 2, b"sig-1")]
    delivered = [x.envelope for x in b.handle(0.0, FrameReceived(frame)) if isinstance(x, Deliver)]
    assert [e.signature for e in delivered] == [b"sig-0", b"sig-1"]
    assert a.handle(0.0, Signed(1, b"again")) == []  # a stale answer changes nothing


def test_a_message_that_fails_before_its_signature_comes_is_just_failed() -> None:
    a = Session(SID_A, sign=True)
    a.handle(0.0, Send(make_envelopes(1)[0], deadline=1.0))
    assert [type(x).__name__ for x in a.handle(1.0, TimerFired())] == ["Failed"]
    assert a.handle(1.0, Signed(1, b"late")) == [] and a.sender.unacked == 0


def inspecting_pair(cfg: SessionConfig | None = None) -> tuple[Session, Session]:
    a, b = Session(SID_A, cfg), Session(SID_B, cfg, inspect=True)
    open_pair(a, b)
    return a, b


def test_only_new_messages_are_shown_for_inspection_once_each() -> None:
    """Inspection remembers ids (the replay guard): duplicates must never reach it."""
    a, b = inspecting_pair()
    m0, m1 = make_envelopes(2)
    for env in (m0, m1):
        a.handle(0.0, Send(env))
    [frame] = data_frames(a, 0.0)
    frame.data.messages.append(frame.data.messages[1])  # a copy later in the same frame
    actions = b.handle(0.0, FrameReceived(frame))
    [ask] = [x for x in actions if isinstance(x, Inspect)]
    assert [e.id for e in ask.envelopes] == ["m0", "m1"] and not [x for x in actions if isinstance(x, Deliver)]
    assert list(ask.sizes) == [held_size(m0), held_size(m1)] and b.receiver.held == 2  # held while judged
    assert b.receiver.stats.duplicates == 1
    actions = b.handle(0.0, Inspected((None, None)))
    assert [x.envelope.id for x in actions if isinstance(x, Deliver)] == ["m0", "m1"]
    # The same frame again (a retransmission): all duplicates, nothing to inspect.
    assert not [x for x in b.handle(0.1, FrameReceived(frame)) if isinstance(x, Inspect)]


def test_frames_wait_for_the_verdicts_on_the_last_one() -> None:
    a, b = inspecting_pair()
    a.handle(0.0, Send(make_envelopes(1)[0]))
    [frame] = data_frames(a, 0.0)
    b.handle(0.0, FrameReceived(frame))
    with pytest.raises(RuntimeError):
        b.handle(0.0, FrameReceived(frame))
    with pytest.raises(ValueError):
        b.handle(0.0, Inspected((None, None)))  # one verdict per message
    b.handle(0.0, Inspected((None,)))
    assert b.handle(0.0, FrameReceived(frame)) is not None  # answered: frames flow again


def test_inbox_full_verdicts_drop_unacknowledged_and_the_sender_resends() -> None:
    a, b = inspecting_pair(SessionConfig(auto_consume=True, ack_every=1, min_rto=0.05, initial_rto=0.05))
    for env in make_envelopes(3):
        a.handle(0.0, Send(env))
    [frame] = data_frames(a, 0.0)
    b.handle(0.0, FrameReceived(frame))
    actions = b.handle(0.0, Inspected((None, INBOX_FULL, INBOX_FULL)))
    assert [x.envelope.id for x in actions if isinstance(x, Deliver)] == ["m0"]
    assert Notice("inbox_full") in actions
    assert b.receiver.stats.inbox_full == 2 and b.receiver.held == 0
    # Not released to the adapter: the adapter never held them (it said so).
    assert [x for x in actions if isinstance(x, Released)] == [Released(1, held_size(frame.data.messages[0]))]
    for f in [decode_frame(raw) for raw in iter(lambda: b.transmit(0.01), None)]:
        a.handle(0.01, FrameReceived(f))
    assert a.sender.unacked == 2  # only m0 acknowledged
    a.handle(1.0, TimerFired())  # RTO: resend what is unacknowledged
    [again] = data_frames(a, 1.0)
    [ask] = [x for x in b.handle(1.0, FrameReceived(again)) if isinstance(x, Inspect)]
    assert [e.id for e in ask.envelopes] == ["m1", "m2"]
    actions = b.handle(1.0, Inspected((None, None)))
    assert [x.envelope.id for x in actions if isinstance(x, Deliver)] == ["m1", "m2"]


def test_released_tells_the_adapter_what_the_receiver_let_go_of() -> None:
    a, b = Session(SID_A), Session(SID_B)  # consumption by event, as the node does it
    open_pair(a, b)
    m0 = make_envelopes(1)[0]
    a.handle(0.0, Send(m0))
    [frame] = data_frames(a, 0.0)
    [deliver] = [x for x in b.handle(0.0, FrameReceived(frame)) if isinstance(x, Deliver)]
    assert b.receiver.held == 1
    actions = b.handle(0.0, Consumed(deliver.envelope.session_id, deliver.envelope.seq))
    assert Released(1, held_size(m0)) in actions and b.receiver.held == 0


def test_a_flood_of_new_sessions_is_noticed() -> None:
    b = Session(SID_B)
    b.handle(0.0, Connected())
    notices = []
    for n in range(6):
        hello = Frame()
        hello.hello.session_id, hello.hello.low_seq = bytes([n]) * 16, 1
        notices += [x for x in b.handle(0.0, FrameReceived(hello)) if isinstance(x, Notice)]
    assert notices == [Notice("session_churn")] * 2  # sessions 5 and 6 beyond the 4 known


@pytest.mark.parametrize("seed", range(3))
def test_simulation_with_signing_and_inspection_is_exactly_once_in_order(seed: int) -> None:
    """Loss, reordering, duplicates, disconnects, forgeries and a full inbox at once."""
    rng = random.Random(900 + seed)
    cfg = dict(window_messages=128, receive_window=128, min_rto=0.05)
    a = Session(rng.randbytes(16), SessionConfig(**cfg), sign=True)  # type: ignore[arg-type]
    b = Session(rng.randbytes(16), SessionConfig(**cfg), inspect=True)  # type: ignore[arg-type]
    sim = Sim(rng, a, b, LinkProfile(loss=0.1, duplicate=0.05, delay=0.005, jitter=0.01), frame_bytes=2048)
    msgs = make_envelopes(2_000)
    forged = {e.id for e in msgs[::97]}
    judged: list[str] = []  # every id given a final verdict
    full_refusals = 0

    def inspector(envs: tuple[Envelope, ...], sizes: tuple[int, ...]) -> tuple[str | None, ...]:
        nonlocal full_refusals
        verdicts: list[str | None] = []
        full = False
        for env in envs:
            assert env.signature == b"sig:" + env.id.encode()
            if full or rng.random() < 0.03:
                full = True  # as the node does: nothing after a refusal fits either
                full_refusals += 1
                verdicts.append(INBOX_FULL)
                continue
            judged.append(env.id)
            verdicts.append("forged" if env.id in forged else None)
        return tuple(verdicts)

    sim.nodes["a"].signer = lambda env: b"sig:" + env.id.encode()
    sim.nodes["b"].inspector = inspector
    sim.connect()
    sim.queue_messages("a", msgs)

    def flap() -> None:
        if len(sim.nodes["a"].acked) == len(msgs):
            return
        sim.disconnect()
        sim.at(sim.now + 0.05, "call", "a", sim.connect)
        sim.at(sim.now + rng.uniform(0.2, 0.6), "call", "a", flap)

    sim.at(0.3, "call", "a", flap)
    sim.run(until=lambda: len(sim.nodes["a"].acked) == len(msgs))
    assert [e.id for e in sim.nodes["b"].delivered] == [e.id for e in msgs if e.id not in forged]
    assert sim.nodes["a"].acked == [e.id for e in msgs]  # a forgery's seq is skipped, so acked
    assert sorted(judged) == sorted(e.id for e in msgs)  # each judged once: duplicates never shown
    assert full_refusals > 0 and b.receiver.stats.inbox_full == full_refusals
    assert b.receiver.stats.rejected == len(forged) and b.receiver.held == 0
