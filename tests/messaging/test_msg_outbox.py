"""Durable outbox/consumed state: restarts lose nothing and deliver nothing twice."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentp2p.messaging.events import Accepted, Acked, Action, Deliver, Failed
from agentp2p.messaging.outbox import Outbox
from agentp2p.messaging.session import Session, SessionConfig
from agentp2p.pb.msg_pb2 import Envelope
from tests.messaging.msgsim import LinkProfile, Sim, make_envelopes

PEER_A, PEER_B = b"peer-a", b"peer-b"
CFG = SessionConfig(window_messages=64, receive_window=64, min_rto=0.05)


def durable_sender(store: Outbox, peer: bytes, rng: random.Random) -> tuple[Session, object]:
    sid, next_seq, pending = store.outgoing(peer, rng.randbytes(16))
    session = Session(sid, CFG, next_seq=next_seq, pending=pending)

    def hook(act: Action) -> None:
        if isinstance(act, Accepted):
            store.add(peer, [(act.envelope, None)])
        elif isinstance(act, (Acked, Failed)):
            store.remove(peer, [act.envelope.seq])

    return session, hook


def durable_receiver(store: Outbox, peer: bytes, rng: random.Random) -> tuple[Session, object]:
    session = Session(rng.randbytes(16), CFG, received=store.received(peer))

    def hook(act: Action) -> None:
        if isinstance(act, Deliver):  # the app takes it now; record before the ACK can go
            store.mark_consumed(peer, [act.envelope])

    return session, hook


def test_outbox_round_trip_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "msg.sqlite"
    env = make_envelopes(3)
    with Outbox(db) as store:
        sid, next_seq, pending = store.outgoing(PEER_B, b"s" * 16)
        assert (sid, next_seq, pending) == (b"s" * 16, 1, [])
        for i, e in enumerate(env, start=1):
            e.session_id, e.seq = sid, i
        store.add(PEER_B, [(e, 1234 if e.seq == 2 else None) for e in env])
        store.remove(PEER_B, [1])
        store.mark_consumed(PEER_A, [Envelope(id="x", session_id=b"t" * 16, seq=7, timestamp_ms=99)])
    with Outbox(db) as store:
        sid, next_seq, pending = store.outgoing(PEER_B, b"other-session-id")
        assert sid == b"s" * 16 and next_seq == 4  # session and numbering survive
        assert [(e.id, dl) for e, dl in pending] == [("m1", 1234), ("m2", None)]
        assert store.received(PEER_A) == {b"t" * 16: 7}
        assert store.recent_ids(0) == [(PEER_A, "x", 99)]
        assert store.peers_with_pending() == [PEER_B]
        store.prune_ids(100)
        assert store.recent_ids(0) == []


def test_add_refuses_foreign_session_atomically(tmp_path: Path) -> None:
    with Outbox(tmp_path / "x.sqlite") as store:
        store.outgoing(PEER_B, b"s" * 16)
        bad = Envelope(id="m", session_id=b"z" * 16, seq=1)
        with pytest.raises(ValueError):
            store.add(PEER_B, [(bad, None)])
        assert store.outgoing(PEER_B, b"q" * 16)[2] == []  # rolled back: nothing stored


def test_consumed_state_keeps_only_recent_sessions(tmp_path: Path) -> None:
    with Outbox(tmp_path / "x.sqlite", max_sessions_per_peer=2) as store:
        for n in range(4):
            store.mark_consumed(PEER_A, [Envelope(id=f"i{n}", session_id=bytes([n]) * 16, seq=n + 1)])
        assert list(store.received(PEER_A)) == [bytes([2]) * 16, bytes([3]) * 16]


@pytest.mark.parametrize("seed", range(3))
def test_sender_restart_resends_from_outbox(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Outbox(tmp_path / "a.sqlite")
    a, hook = durable_sender(store, PEER_B, rng)
    b = Session(rng.randbytes(16), SessionConfig(window_messages=64, receive_window=64, auto_consume=True))
    sim = Sim(rng, a, b, LinkProfile(loss=0.1, delay=0.005, jitter=0.005), frame_bytes=1500)
    sim.nodes["a"].hook = hook
    sim.connect()
    msgs = make_envelopes(600)
    sim.queue_messages("a", msgs[:300])
    sim.run(until=lambda: len(sim.nodes["b"].delivered) >= 150)

    # Crash: the process dies, its in-memory session with it; the peer notices.
    sim.disconnect()
    store.close()
    in_outbox = len(Outbox(tmp_path / "a.sqlite").outgoing(PEER_B, b"")[2])
    assert in_outbox > 0  # some accepted messages were not yet acknowledged
    store = Outbox(tmp_path / "a.sqlite")
    a2, hook2 = durable_sender(store, PEER_B, rng)
    assert a2.session_id == a.session_id
    sim.nodes["a"].session, sim.nodes["a"].hook = a2, hook2
    sim.nodes["a"].to_send.clear()  # the app re-submits what it had not had accepted
    unaccepted = msgs[len(sim.nodes["a"].accepted) : 300] + msgs[300:]
    sim.connect()
    sim.queue_messages("a", unaccepted)
    sim.run(until=lambda: len(sim.nodes["b"].delivered) >= 600 and store.outgoing(PEER_B, b"")[2] == [])
    assert [e.id for e in sim.nodes["b"].delivered] == [e.id for e in msgs]
    store.close()


@pytest.mark.parametrize("seed", range(3))
def test_receiver_restart_never_delivers_twice(tmp_path: Path, seed: int) -> None:
    rng = random.Random(100 + seed)
    a = Session(rng.randbytes(16), CFG)
    store = Outbox(tmp_path / "b.sqlite")
    b, hook = durable_receiver(store, PEER_A, rng)
    sim = Sim(rng, a, b, LinkProfile(loss=0.1, duplicate=0.1, delay=0.005, jitter=0.005), frame_bytes=1500)
    sim.nodes["b"].hook = hook
    sim.connect()
    msgs = make_envelopes(500)
    sim.queue_messages("a", msgs)
    sim.run(until=lambda: len(sim.nodes["b"].delivered) >= 200)

    sim.disconnect()  # b crashes: its reorder buffer and unacked deliveries are gone
    store.close()
    store = Outbox(tmp_path / "b.sqlite")
    b2, hook2 = durable_receiver(store, PEER_A, rng)
    sim.nodes["b"].session, sim.nodes["b"].hook = b2, hook2
    sim.connect()
    sim.run(until=lambda: len(sim.nodes["a"].acked) == 500)
    # The app-level list spans both lives of b: each message exactly once, in order.
    assert [e.id for e in sim.nodes["b"].delivered] == [e.id for e in msgs]
    store.close()


def test_receiver_restart_without_store_is_told_where_to_start() -> None:
    """A receiver that lost all state starts at the sender's low_seq, not at 1."""
    rng = random.Random(7)
    a = Session(rng.randbytes(16), SessionConfig(auto_consume=True))
    b = Session(rng.randbytes(16), SessionConfig(auto_consume=True))
    sim = Sim(rng, a, b, LinkProfile(delay=0.005))
    sim.connect()
    msgs = make_envelopes(100)
    sim.queue_messages("a", msgs[:50])
    sim.run(until=lambda: len(sim.nodes["a"].acked) == 50)
    sim.disconnect()
    sim.nodes["b"].session = Session(rng.randbytes(16), SessionConfig(auto_consume=True))
    sim.connect()
    sim.queue_messages("a", msgs[50:])
    sim.run(until=lambda: len(sim.nodes["a"].acked) == 100)
    assert [e.id for e in sim.nodes["b"].delivered] == [e.id for e in msgs]
