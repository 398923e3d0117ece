"""Messages the receiver's policy refuses (Ack.forbidden), in the sans-IO
session pair: each fails at the sender as forbidden and none is ever
reported delivered, however many gaps they leave and whatever ACK is lost."""

from __future__ import annotations

from agentp2p.messaging.events import FORBIDDEN, Acked, Connected, Disconnected, Failed, FrameReceived, Inspect, \
    Inspected, Send
from agentp2p.messaging.session import SessionConfig
from agentp2p.messaging.wire import decode_frame
from tests.messaging.msgsim import make_envelopes
from tests.messaging.test_msg_sign_inspect import data_frames, inspecting_pair


def _frames(src, now):  # type: ignore[no-untyped-def]
    out = []
    while (f := src.transmit(now)) is not None:
        out.append(decode_frame(f))
    return out


def _exchange(a, b, now, verdict):  # type: ignore[no-untyped-def]
    """One round both ways; b judges what is new with ``verdict``; a's outcomes."""
    res = []
    for fr in _frames(a, now):
        acts = b.handle(now, FrameReceived(fr))
        asks = [x for x in acts if isinstance(x, Inspect)]
        for ask in asks:
            b.handle(now, Inspected(tuple(verdict(e) for e in ask.envelopes)))
    for fr in _frames(b, now):
        res += a.handle(now, FrameReceived(fr))
    return res


def _odd(env) -> str | None:  # type: ignore[no-untyped-def]
    return FORBIDDEN if int(env.id[1:]) % 2 else None


def test_more_refused_gaps_than_an_ack_has_ranges_are_all_failed_never_acked() -> None:
    a, b = inspecting_pair(SessionConfig(auto_consume=True))
    envs = make_envelopes(100)  # every other one refused: 50 ranges, an ACK carries 32
    for e in envs:
        a.handle(0.0, Send(e))
    res = []
    for fr in data_frames(a, 0.0):
        acts = b.handle(0.0, FrameReceived(fr))
        [ask] = [x for x in acts if isinstance(x, Inspect)]
        b.handle(0.0, Inspected(tuple(_odd(e) for e in ask.envelopes)))
    for round_ in range(1, 10):
        for fr in _frames(b, round_ * 0.01):
            res += a.handle(round_ * 0.01, FrameReceived(fr))
        res += _exchange(a, b, round_ * 0.01 + 0.005, _odd)
    acked = {x.envelope.id for x in res if isinstance(x, Acked)}
    failed = {x.envelope.id for x in res if isinstance(x, Failed) and x.reason == "forbidden"}
    assert not {i for i in acked if int(i[1:]) % 2}, "a refused message was reported delivered"
    assert failed == {e.id for e in envs if int(e.id[1:]) % 2}
    assert acked == {e.id for e in envs if not int(e.id[1:]) % 2}


def test_a_refusal_whose_ack_is_lost_is_reported_again_after_the_reconnect() -> None:
    a, b = inspecting_pair(SessionConfig(auto_consume=True))
    [e] = make_envelopes(1)
    a.handle(0.0, Send(e))
    [fr] = data_frames(a, 0.0)
    b.handle(0.0, FrameReceived(fr))
    b.handle(0.0, Inspected((FORBIDDEN,)))
    lost = _frames(b, 0.01)  # the ACK that says so is lost with the connection
    assert any((f.WhichOneof("body") == "ack" and f.ack.forbidden) for f in lost)
    for s in (a, b):
        s.handle(0.02, Disconnected())
    for s in (a, b):
        s.handle(0.03, Connected())
    res = []
    for _ in range(5):
        res += _exchange(a, b, 2.0, lambda env: FORBIDDEN)
    assert not [x for x in res if isinstance(x, Acked)], "refused message reported delivered"
    assert [x.reason for x in res if isinstance(x, Failed)] == ["forbidden"]


def test_overlapping_forbidden_ranges_fail_each_message_once() -> None:
    a, b = inspecting_pair(SessionConfig(auto_consume=True))
    envs = make_envelopes(3)
    for env in envs:
        a.handle(0.0, Send(env))
    for fr in data_frames(a, 0.0):
        b.handle(0.0, FrameReceived(fr))
        b.handle(0.0, Inspected((None, None, None)[: len(fr.data.messages)]))
    failed = a.sender.fail_forbidden([(1, 2), (2, 3), (1, 3)])
    assert [o.seq for o in failed] == [1, 2, 3] and a.sender.fail_forbidden([(1, 3)]) == []
