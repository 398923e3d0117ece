"""Receipts in the session core: *stored* (a durable receiver's inbox answers
for the message; a sender that hands it off forgets it then) and
*consumed*; a full durable inbox refuses with a notice and the sender fails
the handed-off messages at once, while messages kept for consumption are
retried (backpressure).

Sans-IO: two sessions, frames handed over directly, the receiver's adapter
played by the test (it reports its durable writes with ``Persisted``).
"""

from __future__ import annotations

from agentp2p.messaging.events import (
    INBOX_FULL,
    Acked,
    Connected,
    Consumed,
    Deliver,
    Failed,
    FrameReceived,
    Inspect,
    Inspected,
    PeerConsumed,
    Persisted,
    Send,
    Stored,
    TimerFired,
)
from agentp2p.messaging.session import ConnState, Session, SessionConfig
from agentp2p.messaging.wire import decode_frame
from agentp2p.pb.msg_pb2 import Frame
from tests.messaging.msgsim import make_envelopes

SID_A, SID_B = b"A" * 16, b"B" * 16


def pair(receiver_cfg: SessionConfig | None = None, *, durable: bool = True, **restored: object) -> tuple[Session, Session]:
    """Sender ``a`` and receiver ``b`` (durable unless told), through the Hello exchange."""
    a = Session(SID_A, SessionConfig(ack_every=1))
    b = Session(SID_B, receiver_cfg or SessionConfig(ack_every=1), durable=durable, **restored)  # type: ignore[arg-type]
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


def persist(b: Session, actions: list) -> list:
    """What a durable adapter does with Deliver actions: write them, then say so."""
    out = []
    for act in actions:
        if isinstance(act, Deliver):
            out += b.handle(0.0, Persisted(act.envelope.session_id, act.envelope.seq))
    return out


def of(kind: type, actions: list) -> list:
    return [x for x in actions if isinstance(x, kind)]


def test_stored_receipt_releases_the_message_and_consumed_comes_later() -> None:
    a, b = pair()
    for env in make_envelopes(3):
        a.handle(0.0, Send(env, handoff=True))
    delivered = of(Deliver, pump(a, b, 0.0))
    assert [d.envelope.id for d in delivered] == ["m0", "m1", "m2"]
    persist(b, delivered)
    back = pump(b, a, 0.001)
    assert [(x.envelope.id, x.released) for x in of(Stored, back)] == [("m0", True), ("m1", True), ("m2", True)]
    assert not of(Acked, back)
    # Released: nothing unacknowledged, no retransmission, no connection wanted.
    assert a.sender.unacked == 0 and a.window.messages == 0 and a.next_timer() is None
    # The reader consumes two of them: the consumed receipt covers exactly those.
    for d in delivered[:2]:
        b.handle(0.002, Consumed(d.envelope.session_id, d.envelope.seq))
    back = pump(b, a, 0.003)
    assert of(PeerConsumed, back) == [PeerConsumed(2, 2)] and not of(Stored, back) and not of(Acked, back)
    b.handle(0.004, Consumed(delivered[2].envelope.session_id, delivered[2].envelope.seq))
    assert of(PeerConsumed, pump(b, a, 0.005)) == [PeerConsumed(3, 1)]


def test_without_a_durable_inbox_there_is_no_stored_receipt_and_frames_do_not_change() -> None:
    a, b = pair(durable=False)
    a.handle(0.0, Send(make_envelopes(1)[0]))
    [d] = of(Deliver, pump(a, b, 0.0))
    assert persist(b, [d]) == []  # a non-durable receiver ignores Persisted
    frame = b.transmit(0.01)  # the delayed ACK (delivered, not consumed)
    assert frame is not None
    ack = decode_frame(frame).ack
    assert (ack.stored, ack.inbox_full, len(ack.inbox_refused)) == (0, 0, 0)  # nothing an older peer would not send
    a.handle(0.01, FrameReceived(decode_frame(frame)))
    assert a.sender.unacked == 1  # kept until consumed
    b.handle(0.02, Consumed(d.envelope.session_id, d.envelope.seq))
    back = pump(b, a, 0.03)
    assert [x.envelope.id for x in of(Acked, back)] == ["m0"] and not of(Stored, back) and not of(PeerConsumed, back)


def test_a_delivery_not_persisted_is_not_acknowledged_as_stored() -> None:
    a, b = pair()
    for env in make_envelopes(3):
        a.handle(0.0, Send(env, handoff=True))
    delivered = of(Deliver, pump(a, b, 0.0))
    # The adapter stored the first only (its write of the others failed).
    b.handle(0.0, Persisted(delivered[0].envelope.session_id, delivered[0].envelope.seq))
    assert [x.envelope.id for x in of(Stored, pump(b, a, 0.001))] == ["m0"]
    assert a.sender.unacked == 2  # the sender keeps what only sits in the receiver's memory


def test_sender_runs_ahead_of_consumption_up_to_the_inbox_then_fails_with_inbox_full() -> None:
    # The receiver holds at most 3 unconsumed messages from this sender.
    a, b = pair(SessionConfig(ack_every=1, receive_window=3))
    for env in make_envelopes(3):
        a.handle(0.0, Send(env, handoff=True))
    persist(b, pump(a, b, 0.0))
    assert len(of(Stored, pump(b, a, 0.001))) == 3
    # The window is free again although nobody consumed: the inbox answers now.
    assert a.can_send(100)
    extra = make_envelopes(2, prefix="x")
    for env in extra:
        a.handle(0.002, Send(env, handoff=True))
    assert not of(Deliver, pump(a, b, 0.002))  # refused: the inbox is full
    assert b.receiver.stats.inbox_full == 2
    back = pump(b, a, 0.003)
    failed = of(Failed, back)
    assert [(x.envelope.id, x.reason) for x in failed] == [("x0", "inbox_full"), ("x1", "inbox_full")]
    assert a.sender.unacked == 0 and a.sender.stats.inbox_full == 2
    assert b.receiver.stats.inbox_full_reported == 1
    # Nothing lost: the reader consumes the three, the receiver skips the
    # refused seqs (low_seq) and the next message is stored again.
    for seq in (1, 2, 3):
        b.handle(0.004, Consumed(SID_A, seq))
    assert of(PeerConsumed, pump(b, a, 0.005)) == [PeerConsumed(3, 3)]
    a.handle(0.006, Send(make_envelopes(1, prefix="y")[0], handoff=True))
    delivered = of(Deliver, pump(a, b, 0.006))
    assert [d.envelope.id for d in delivered] == ["y0"]
    persist(b, delivered)
    assert [x.envelope.id for x in of(Stored, pump(b, a, 0.007))] == ["y0"]
    assert b.receiver.stats.skipped == 2


def test_inbox_full_verdict_from_the_adapter_is_reported_too() -> None:
    a = Session(SID_A, SessionConfig(ack_every=1))
    b = Session(SID_B, SessionConfig(ack_every=1), durable=True, inspect=True)
    a.handle(0.0, Connected())
    b.handle(0.0, Connected())
    b.handle(0.0, FrameReceived(decode_frame(a.transmit(0.0))))
    a.handle(0.0, FrameReceived(decode_frame(b.transmit(0.0))))
    for env in make_envelopes(2):
        a.handle(0.0, Send(env, handoff=True))
    [ask] = of(Inspect, pump(a, b, 0.0))
    assert [e.id for e in ask.envelopes] == ["m0", "m1"]
    delivered = of(Deliver, b.handle(0.0, Inspected((None, INBOX_FULL))))  # the node-wide inbox is full
    persist(b, delivered)
    back = pump(b, a, 0.001)
    assert [x.envelope.id for x in of(Stored, back)] == ["m0"]
    assert [(x.envelope.id, x.reason) for x in of(Failed, back)] == [("m1", "inbox_full")]
    assert a.sender.unacked == 0


def test_restarted_durable_receiver_acknowledges_its_restored_inbox_as_stored_in_hello() -> None:
    # A receiver restarted from its store holds seqs 1..2 of A's session, unconsumed.
    a = Session(SID_A, SessionConfig(ack_every=1))
    for env in make_envelopes(2):
        a.handle(0.0, Send(env, handoff=True))
    a.handle(0.0, Connected())
    pump_first = a.transmit(0.0)  # a's Hello (the data waits for b's)
    b = Session(SID_B, SessionConfig(ack_every=1), durable=True, restored={SID_A: [(1, 300), (2, 300)]})
    b.handle(0.0, Connected())
    b.handle(0.0, FrameReceived(decode_frame(pump_first)))
    hello = decode_frame(b.transmit(0.0))
    assert hello.WhichOneof("body") == "hello" and hello.hello.ack.stored == 2
    actions = a.handle(0.0, FrameReceived(hello))
    assert [x.envelope.id for x in of(Stored, actions)] == ["m0", "m1"] and a.sender.unacked == 0


def test_messages_kept_for_consumption_report_stored_and_retry_a_full_inbox() -> None:
    """Without handoff (the caller waits for consumption) the stored receipt
    is only reported, and a refusal is backpressure: retried, never failed."""
    a, b = pair(SessionConfig(ack_every=1, receive_window=2))
    for env in make_envelopes(2):
        a.handle(0.0, Send(env))
    delivered = of(Deliver, pump(a, b, 0.0))
    persist(b, delivered)
    back = pump(b, a, 0.001)
    assert [(x.envelope.id, x.released) for x in of(Stored, back)] == [("m0", False), ("m1", False)]
    assert a.sender.unacked == 2  # kept until consumed
    # A third one while the receiver holds its maximum of 2 from us. (The
    # sender's window is the receiver's, 2: widen it, as a restarted or
    # mixed sender might have, to reach the receiver's bound.)
    a.window.peer_limit = 3
    a.handle(0.002, Send(make_envelopes(1, prefix="k")[0]))
    assert not of(Deliver, pump(a, b, 0.002)) and b.receiver.stats.inbox_full == 1
    back = pump(b, a, 0.003)
    assert not of(Failed, back) and a.sender.unacked == 3  # kept, to retry
    # The reader consumes: m0, m1 acknowledged as consumed; k0 goes again (RTO) and fits.
    for d in delivered:
        b.handle(0.004, Consumed(d.envelope.session_id, d.envelope.seq))
    back = pump(b, a, 0.005)
    assert [x.envelope.id for x in of(Acked, back)] == ["m0", "m1"] and not of(PeerConsumed, back)
    now = a.next_timer()
    a.handle(now, TimerFired())
    delivered = of(Deliver, pump(a, b, now))
    assert [d.envelope.id for d in delivered] == ["k0"]


def test_frames_parse_with_the_new_fields() -> None:
    frame = Frame()
    frame.ack.session_id = SID_A
    frame.ack.stored = 7
    frame.ack.inbox_full = 8
    frame.ack.inbox_refused.add(start=8, end=9)
    again = decode_frame(frame.SerializeToString())
    assert (again.ack.stored, again.ack.inbox_full) == (7, 8)
    assert [(r.start, r.end) for r in again.ack.inbox_refused] == [(8, 9)]


def test_a_message_sent_after_a_refusal_and_stored_is_not_failed_with_it() -> None:
    """Only what the receiver refused fails. m3 is refused; while that ACK is
    in flight the reader consumes m0 and m4, sent for the first time, finds
    room and is buffered: m4 must not be reported refused, since the receiver
    delivers it (a caller told 507 would resend it and the reader get it twice)."""
    a, b = pair(SessionConfig(ack_every=1, receive_window=3))
    msgs = make_envelopes(5)
    for env in msgs[:3]:
        a.handle(0.0, Send(env, handoff=True))
    first = of(Deliver, pump(a, b, 0.0))
    persist(b, first)
    assert len(of(Stored, pump(b, a, 0.001))) == 3
    a.handle(0.002, Send(msgs[3], handoff=True))
    assert not of(Deliver, pump(a, b, 0.002))  # m3 refused: the inbox holds 3
    refusal = b.transmit(0.003)  # its ACK, still in flight
    assert refusal is not None and decode_frame(refusal).ack.inbox_full == 4
    b.handle(0.004, Consumed(SID_A, 1))  # the reader frees room
    a.handle(0.005, Send(msgs[4], handoff=True))
    assert not of(Deliver, pump(a, b, 0.005))  # m4 buffered behind the gap at m3
    failed = of(Failed, a.handle(0.006, FrameReceived(decode_frame(refusal))))
    assert [(x.envelope.id, x.reason) for x in failed] == [("m3", "inbox_full")]
    # The receiver's next ACK holds m4; the sender's low_seq skips m3; m4 reaches the reader, stored.
    delivered: list = []
    stored: list = []
    failed = []
    for step in range(4):
        now = 0.01 + step * 0.001
        back = pump(b, a, now)
        failed += of(Failed, back)
        stored += of(Stored, back)
        got = pump(a, b, now)
        delivered += of(Deliver, got)
        persist(b, got)
    assert [d.envelope.id for d in delivered] == ["m4"]
    assert [x.envelope.id for x in stored] == ["m4"] and not failed
    assert a.sender.unacked == 0 and a.sender.stats.inbox_full == 1


def test_a_refused_message_with_a_later_copy_in_flight_is_retried_not_failed() -> None:
    """The refusal may be of a copy that a timeout retransmission overtook:
    that copy can find room and be delivered, so the sender must not report
    the message refused; it is retried until stored (or its deadline)."""
    a, b = pair(SessionConfig(ack_every=1, receive_window=3))
    msgs = make_envelopes(4)
    for env in msgs[:3]:
        a.handle(0.0, Send(env, handoff=True))
    persist(b, pump(a, b, 0.0))
    assert len(of(Stored, pump(b, a, 0.001))) == 3
    a.handle(0.002, Send(msgs[3], handoff=True))
    assert not of(Deliver, pump(a, b, 0.002))  # m3 refused
    refusal = b.transmit(0.003)
    assert refusal is not None and decode_frame(refusal).ack.inbox_full == 4
    # The refusal's ACK is slow: the sender's timeout sends m3 again meanwhile.
    now = a.next_timer()
    assert now is not None
    a.handle(now, TimerFired())
    copy = a.transmit(now)
    assert copy is not None
    b.handle(now, Consumed(SID_A, 1))  # the reader frees room before the copy arrives
    delivered = of(Deliver, b.handle(now, FrameReceived(decode_frame(copy))))
    assert [d.envelope.id for d in delivered] == ["m3"]
    persist(b, delivered)
    assert not of(Failed, a.handle(now, FrameReceived(decode_frame(refusal))))
    assert [x.envelope.id for x in of(Stored, pump(b, a, now + 0.001))] == ["m3"]
    assert a.sender.unacked == 0 and a.sender.stats.inbox_full == 0


def test_the_ack_lists_exactly_the_refused_seqs() -> None:
    """Refused, taken (room came back), refused: two ranges, and the sender fails those two only."""
    a, b = pair(SessionConfig(ack_every=1, receive_window=3))
    msgs = make_envelopes(6)
    for env in msgs[:3]:
        a.handle(0.0, Send(env, handoff=True))
    persist(b, pump(a, b, 0.0))
    pump(b, a, 0.001)
    a.handle(0.002, Send(msgs[3], handoff=True))
    b.handle(0.002, FrameReceived(decode_frame(a.transmit(0.002))))  # m3 (seq 4) refused
    b.handle(0.003, Consumed(SID_A, 1))
    for env in msgs[4:]:
        a.handle(0.004, Send(env, handoff=True))
        b.handle(0.004, FrameReceived(decode_frame(a.transmit(0.004))))  # m4 taken, m5 refused
    frame = decode_frame(b.transmit(0.005))
    ack = frame.data.ack if frame.WhichOneof("body") == "data" else frame.ack
    assert ack.inbox_full == 4 and [(r.start, r.end) for r in ack.inbox_refused] == [(4, 4), (6, 6)]
    assert [(r.start, r.end) for r in ack.selective] == [(2, 3), (5, 5)]
    failed = of(Failed, a.handle(0.006, FrameReceived(frame)))
    assert [x.envelope.id for x in failed] == ["m3", "m5"] and a.sender.unacked == 1  # m4, held there


def test_an_ack_with_inbox_full_but_no_ranges_fails_that_seq_alone() -> None:
    a, _ = pair()
    for env in make_envelopes(3):
        a.handle(0.0, Send(env, handoff=True))
    a.transmit(0.0)
    frame = Frame()
    frame.ack.session_id = SID_A
    frame.ack.inbox_full = 2
    failed = of(Failed, a.handle(0.001, FrameReceived(frame)))
    assert [x.envelope.id for x in failed] == ["m1"] and a.sender.unacked == 2
