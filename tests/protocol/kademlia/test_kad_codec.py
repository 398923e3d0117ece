"""The Kademlia codec: spec field numbers, bounds checked before/after parse, one error type."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentp2p.pb import kad_dht_pb2 as pb
from agentp2p.protocol.kademlia.codec import (
    CodecError,
    ConnectionType,
    Limits,
    Message,
    MessageType,
    Peer,
    Record,
    decode_message,
    encode_message,
)


def test_field_numbers_are_the_specs() -> None:
    """Tags as in kad-dht/README.md: type 1, key 2, record 3, closerPeers 8,
    providerPeers 9, clusterLevelRaw 10; Record key 1, value 2, timeReceived 5;
    Peer id 1, addrs 2, connection 3."""
    f = pb.Message.DESCRIPTOR.fields_by_name
    assert {n: f[n].number for n in f} == {
        "type": 1, "key": 2, "record": 3, "closerPeers": 8, "providerPeers": 9, "clusterLevelRaw": 10,
    }
    assert {n: x.number for n, x in pb.Record.DESCRIPTOR.fields_by_name.items()} == {
        "key": 1, "value": 2, "timeReceived": 5,
    }
    assert {n: x.number for n, x in pb.Message.Peer.DESCRIPTOR.fields_by_name.items()} == {
        "id": 1, "addrs": 2, "connection": 3,
    }
    assert [(v.name, v.number) for v in pb.Message.MessageType.DESCRIPTOR.values] == [
        ("PUT_VALUE", 0), ("GET_VALUE", 1), ("ADD_PROVIDER", 2), ("GET_PROVIDERS", 3), ("FIND_NODE", 4), ("PING", 5),
    ]


def test_known_bytes() -> None:
    """A FIND_NODE with one closer peer, byte for byte (what go would write)."""
    msg = Message(MessageType.FIND_NODE, key=b"k", closer_peers=(Peer(b"id", (b"a",), ConnectionType.CONNECTED),))
    assert encode_message(msg) == bytes.fromhex("0804" "12016b" "4209" "0a026964" "120161" "1801")
    assert decode_message(encode_message(msg)) == msg


def test_roundtrip_all_fields() -> None:
    msg = Message(
        MessageType.GET_PROVIDERS,
        key=b"/agentp2p/x",
        record=Record(b"/agentp2p/x", b"v" * 100, "2024-01-01T00:00:00Z"),
        closer_peers=tuple(Peer(bytes([i]) * 38, (b"/ip4/1.2.3.4/tcp/1",)) for i in range(20)),
        provider_peers=(Peer(b"p" * 38, (b"/dns/x/tcp/2", b"/ip6/::1/udp/3/quic-v1")),),
    )
    assert decode_message(encode_message(msg)) == msg


def test_size_checked_before_parse() -> None:
    lim = Limits(max_message_bytes=100)
    with pytest.raises(CodecError, match="exceeds"):
        decode_message(b"\xff" * 101, lim)  # garbage, but refused for its size alone


@pytest.mark.parametrize(
    ("msg", "lim", "what"),
    [
        (Message(MessageType.FIND_NODE, closer_peers=tuple(Peer(bytes([i % 256, i // 256])) for i in range(65))),
         Limits(), "closer peers"),
        (Message(MessageType.GET_PROVIDERS, provider_peers=tuple(Peer(b"p%d" % i) for i in range(11))),
         Limits(max_provider_peers=10), "provider peers"),
        (Message(MessageType.FIND_NODE, closer_peers=(Peer(b"x", tuple(b"a" for _ in range(65))),)),
         Limits(), "addresses"),
        (Message(MessageType.FIND_NODE, closer_peers=(Peer(b"x" * 129),)), Limits(), "peer id"),
        (Message(MessageType.FIND_NODE, closer_peers=(Peer(b"x", (b"a" * 513,)),)), Limits(), "address"),
        (Message(MessageType.GET_VALUE, key=b"k" * 513), Limits(), "key"),
        (Message(MessageType.PUT_VALUE, key=b"k", record=Record(b"k", b"v" * 11)), Limits(max_value_bytes=10),
         "record value"),
        (Message(MessageType.FIND_NODE, closer_peers=(Peer(b""),)), Limits(), "empty peer id"),
    ],
)
def test_limits(msg: Message, lim: Limits, what: str) -> None:
    with pytest.raises(CodecError, match=what):
        decode_message(encode_message(msg), lim)


def test_ten_thousand_closer_peers_are_refused() -> None:
    data = encode_message(Message(MessageType.FIND_NODE, closer_peers=tuple(Peer(b"%05d" % i) for i in range(10_000))))
    assert len(data) < Limits().max_message_bytes  # small enough to parse: the count cap is what refuses it
    with pytest.raises(CodecError, match="10000 closer peers"):
        decode_message(data)


def test_unknown_type_and_garbage() -> None:
    with pytest.raises(CodecError, match="unknown message type"):
        decode_message(pb.Message(type=7).SerializeToString())
    with pytest.raises(CodecError, match="undecodable"):
        decode_message(b"\x0a\xff\xff")
    bad_utf8 = b"\x1a\x03" + b"\x2a\x01\xff"  # record { timeReceived: "\xff" }: proto3 strings are UTF-8
    with pytest.raises(CodecError):
        decode_message(bad_utf8)


def test_unknown_connection_type_means_no_information() -> None:
    m = pb.Message(type=4)
    m.closerPeers.add(id=b"x", connection=9)
    assert decode_message(m.SerializeToString()).closer_peers[0].connection is ConnectionType.NOT_CONNECTED


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_any_bytes_decode_or_codec_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except CodecError:
        return
    assert decode_message(encode_message(msg)) == msg


_peer = st.builds(Peer, st.binary(min_size=1, max_size=40), st.lists(st.binary(max_size=30), max_size=4).map(tuple),
                  st.sampled_from(list(ConnectionType)))
_msg = st.builds(
    Message,
    st.sampled_from(list(MessageType)),
    st.binary(max_size=64),
    st.none() | st.builds(Record, st.binary(max_size=64), st.binary(max_size=256), st.text(max_size=30)),
    st.lists(_peer, max_size=25).map(tuple),
    st.lists(_peer, max_size=25).map(tuple),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_msg)
def test_fuzz_roundtrip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_msg, st.data())
def test_fuzz_mutated_messages(msg: Message, data: st.DataObject) -> None:
    """Valid messages with bytes flipped, cut or appended: CodecError or a message, nothing else."""
    raw = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(0, 4))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            raw += data.draw(st.binary(max_size=8))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_message(bytes(raw[:cut]))
    except CodecError:
        pass
