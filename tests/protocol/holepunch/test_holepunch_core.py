"""DCUtR's decisions (core.py) and messages (codec.py), without sockets."""

from __future__ import annotations

import pytest
from multiaddr import Multiaddr

from agentp2p.protocol.holepunch.codec import (
    CONNECT, MAX_ADDRS, MAX_MESSAGE_BYTES, SYNC, CodecError, connect, decode, pb, punchable, sync, tcp_endpoint,
)
from agentp2p.protocol.holepunch.core import Dial, Done, Initiator, Receiver, Reverse, SendConnect, SendSync

PEER = [("203.0.113.7", 4001)]


def test_initiator_punches_half_a_round_trip_after_sync() -> None:
    core = Initiator()
    assert core.start(0.0, []) == [SendConnect()]
    core.connect_sent(10.0)
    sync_, dial = core.connect_received(10.4, PEER)
    assert sync_ == SendSync()
    assert dial == Dial(tuple(PEER), pytest.approx(10.6), as_client=False)
    assert core.rtt == pytest.approx(0.4)
    assert core.punched(11.0, True) == [Done(True, "punch", 1)]


def test_initiator_tries_three_rounds_then_gives_up() -> None:
    core = Initiator(attempts=3)
    actions = core.start(0.0, [])
    for n in range(1, 4):
        assert actions == [SendConnect()] and core.tried == n
        core.connect_sent(float(n))
        assert isinstance(core.connect_received(n + 0.1, PEER)[1], Dial)
        actions = core.punched(n + 0.5, False)
    (done,) = actions
    assert done.direct is False and done.attempts == 3 and "3 attempt" in done.how


def test_a_slow_relay_does_not_delay_the_dial_by_more_than_the_cap() -> None:
    core = Initiator(max_sync_delay=2.0)
    core.start(0.0, [])
    core.connect_sent(0.0)
    dial = core.connect_received(30.0, PEER)[1]
    assert isinstance(dial, Dial) and dial.at == pytest.approx(32.0)


def test_reversal_first_when_the_peer_has_public_addresses() -> None:
    core = Initiator()
    assert core.start(0.0, PEER) == [Reverse(tuple(PEER))]
    assert core.reversed(1.0, True) == [Done(True, "reversal", 0)]
    core = Initiator()
    core.start(0.0, PEER)
    assert core.reversed(1.0, False) == [SendConnect()]


def test_initiator_stops_on_an_empty_answer_or_a_broken_exchange() -> None:
    core = Initiator()
    core.start(0.0, [])
    core.connect_sent(0.0)
    (done,) = core.connect_received(0.1, [])
    assert not done.direct and "no address" in done.how
    assert core.failed("late") == []  # finished once
    other = Initiator()
    other.start(0.0, [])
    (done,) = other.connect_received(0.1, PEER)  # a CONNECT we never asked for
    assert not done.direct and "protocol error" in done.how


def test_receiver_answers_then_dials_as_client_on_sync() -> None:
    core = Receiver()
    assert core.sync_received(0.0)[0].direct is False  # SYNC first is an error
    core = Receiver()
    assert core.connect_received(0.0, PEER) == [SendConnect()]
    assert core.sync_received(1.0) == [Dial(tuple(PEER), 1.0, as_client=True)]
    assert Receiver().connect_received(0.0, [])[0] == Done(False, "the peer gave no address to punch to")


def test_codec_round_trip_and_refusals() -> None:
    msg = decode(connect([Multiaddr("/ip4/203.0.113.7/tcp/4001")]))
    assert msg.type == CONNECT and punchable(list(msg.ObsAddrs), allow_private=False) == PEER
    assert decode(sync()).type == SYNC
    with pytest.raises(CodecError, match="at most"):
        decode(b"\x08" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(CodecError, match="unreadable"):
        decode(b"\xff\xff")
    with pytest.raises(CodecError, match="required field"):
        decode(pb.HolePunch(ObsAddrs=[b"x"]).SerializePartialToString())  # no type
    with pytest.raises(CodecError, match="required field"):
        decode(b"\x08\x07")  # type 7: not CONNECT or SYNC (proto2 drops it)


def test_only_public_tcp_addresses_are_punched_and_only_a_few() -> None:
    raw = [
        Multiaddr("/ip4/10.0.0.2/tcp/4001").to_bytes(),  # private
        Multiaddr("/ip4/127.0.0.1/tcp/4001").to_bytes(),  # loopback
        Multiaddr("/ip4/203.0.113.9/udp/4001/quic-v1").to_bytes(),  # not TCP
        Multiaddr("/ip4/203.0.113.9/tcp/4001/ws").to_bytes(),  # not plain TCP
        Multiaddr("/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWGzBUdEFCtWDHaq4CoJeYBvWZ4AzNoDszcTAG2dGWDpqn/p2p-circuit")
        .to_bytes(),  # a relay
        b"\x00garbage",
        Multiaddr("/ip4/203.0.113.9/tcp/4001").to_bytes(),
        Multiaddr("/ip4/203.0.113.9/tcp/4001").to_bytes(),  # a duplicate
        Multiaddr("/ip6/2001:db8::1/tcp/4001").to_bytes(),
    ]
    assert punchable(raw, allow_private=False) == [("203.0.113.9", 4001), ("2001:db8::1", 4001)]
    assert ("10.0.0.2", 4001) in punchable(raw, allow_private=True)
    many = [Multiaddr(f"/ip4/203.0.113.{i}/tcp/4001").to_bytes() for i in range(1, 50)]
    assert len(punchable(many, allow_private=False)) == MAX_ADDRS
    assert tcp_endpoint(Multiaddr("/ip4/203.0.113.9/tcp/0")) is None
