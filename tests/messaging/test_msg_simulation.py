"""Exactly-once, in-order delivery through two session cores over a bad link."""

from __future__ import annotations

import random

import pytest

from tests.messaging.msgsim import LinkProfile, Sim, make_envelopes, new_session


def assert_exactly_once_in_order(sim: Sim, sent: list, receiver: str = "b") -> None:
    got = [e.id for e in sim.nodes[receiver].delivered]
    assert got == [e.id for e in sent]


def test_100k_messages_20_percent_loss_reordering_duplication() -> None:
    rng = random.Random(20240605)
    a = new_session(rng, auto_consume=True, window_messages=512, receive_window=512, min_rto=0.05)
    b = new_session(rng, auto_consume=True, window_messages=512, receive_window=512, min_rto=0.05)
    sim = Sim(rng, a, b, LinkProfile(loss=0.20, duplicate=0.05, delay=0.010, jitter=0.010), frame_bytes=4096)
    sim.connect()
    msgs = make_envelopes(100_000)
    # Both directions busy, so ACKs ride on data frames too.
    back = make_envelopes(5_000, prefix="r")
    sim.queue_messages("a", msgs)
    sim.queue_messages("b", back)
    sim.run(until=lambda: len(sim.nodes["a"].acked) == len(msgs) and len(sim.nodes["b"].acked) == len(back))
    assert_exactly_once_in_order(sim, msgs, "b")
    assert_exactly_once_in_order(sim, back, "a")
    assert sim.nodes["a"].acked == [e.id for e in msgs]  # acks complete in order, each once
    assert a.sender.unacked == 0 and a.window.messages == 0
    st = a.sender.stats
    assert st.retransmitted > 0 and st.fast_retransmits > 0  # loss really happened and was repaired
    assert b.receiver.stats.duplicates > 0  # and duplicates really were suppressed
    assert sim.frames_dropped > 0.15 * sim.frames_sent


@pytest.mark.parametrize("seed", range(6))
def test_disconnects_midstream_lose_and_duplicate_nothing(seed: int) -> None:
    rng = random.Random(seed)
    a = new_session(rng, auto_consume=True, window_messages=128, receive_window=128, min_rto=0.05)
    b = new_session(rng, auto_consume=True, window_messages=128, receive_window=128, min_rto=0.05)
    sim = Sim(rng, a, b, LinkProfile(loss=0.1, duplicate=0.05, delay=0.005, jitter=0.01), frame_bytes=2048)
    sim.connect()
    msgs = make_envelopes(3_000)
    sim.queue_messages("a", msgs)

    def flap() -> None:
        if len(sim.nodes["a"].acked) == len(msgs):
            return
        sim.disconnect()  # everything in flight dies
        sim.at(sim.now + rng.uniform(0.01, 0.5), "call", "a", sim.connect)
        sim.at(sim.now + rng.uniform(0.1, 0.6), "call", "a", flap)

    sim.at(0.05, "call", "a", flap)
    sim.run(until=lambda: len(sim.nodes["a"].acked) == len(msgs))
    assert_exactly_once_in_order(sim, msgs)
    assert sim.generation >= 2  # the connection really dropped, more than once
