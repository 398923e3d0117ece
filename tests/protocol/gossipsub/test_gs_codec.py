"""The pubsub RPC codec: wire compatibility, bounds, and that nothing but CodecError escapes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentp2p.pb import gossipsub_rpc_pb2 as pb
from agentp2p.protocol.gossipsub.codec import (
    SIGNING_PREFIX,
    CodecError,
    Limits,
    decode_rpc,
    default_msg_id,
    encode_rpc,
    seqno_bytes,
    signing_payload,
)
from agentp2p.protocol.gossipsub.rpc import (
    Control,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    Rpc,
    SubOpts,
)

FULL = Rpc(
    subscriptions=(SubOpts(True, "a"), SubOpts(False, "b")),
    publish=(Message("a", b"data", b"peer", seqno_bytes(7), b"sig", b"key"), Message("b", b"")),
    control=Control(
        ihave=(IHave("a", (b"m1", b"m2")),),
        iwant=(IWant((b"m3",)),),
        graft=(Graft("a"),),
        prune=(Prune("b", (PeerInfo(b"p1", b"rec"), PeerInfo(b"p2")), 60), Prune("c")),
        idontwant=(IDontWant((b"m4",)),),
    ),
)


def test_roundtrip_keeps_every_field_and_absence() -> None:
    assert decode_rpc(encode_rpc(FULL)) == FULL
    assert decode_rpc(b"") == Rpc()


def test_field_numbers_match_the_spec() -> None:
    # pubsub/README.md + gossipsub v1.0/v1.1/v1.2: these tags are the interop contract.
    def tags(desc):  # type: ignore[no-untyped-def]
        return {f.name: f.number for f in desc.fields}

    assert tags(pb.RPC.DESCRIPTOR) == {"subscriptions": 1, "publish": 2, "control": 3}
    assert tags(pb.RPC.SubOpts.DESCRIPTOR) == {"subscribe": 1, "topicid": 2}
    assert tags(pb.Message.DESCRIPTOR) == {"from": 1, "data": 2, "seqno": 3, "topic": 4, "signature": 5, "key": 6}
    assert tags(pb.ControlMessage.DESCRIPTOR) == {"ihave": 1, "iwant": 2, "graft": 3, "prune": 4, "idontwant": 5}
    assert tags(pb.ControlPrune.DESCRIPTOR) == {"topicID": 1, "peers": 2, "backoff": 3}
    assert tags(pb.PeerInfo.DESCRIPTOR) == {"peerID": 1, "signedPeerRecord": 2}
    assert tags(pb.ControlIDontWant.DESCRIPTOR) == {"messageIDs": 1}


def test_signing_payload_is_prefix_plus_message_without_signature_and_key() -> None:
    m = Message("t", b"x", b"from", seqno_bytes(1), b"sig", b"key")
    expected = pb.Message(topic="t", data=b"x", seqno=seqno_bytes(1))
    setattr(expected, "from", b"from")
    assert signing_payload(m) == SIGNING_PREFIX + expected.SerializeToString()
    assert signing_payload(m) == signing_payload(Message("t", b"x", b"from", seqno_bytes(1)))


def test_default_msg_id_is_from_plus_seqno() -> None:
    assert default_msg_id(Message("t", b"", b"P", b"\x00\x01")) == b"P\x00\x01"
    assert seqno_bytes(1) == b"\x00" * 7 + b"\x01"


@pytest.mark.parametrize(
    "rpc",
    [
        Rpc(subscriptions=tuple(SubOpts(True, str(i)) for i in range(5))),
        Rpc(publish=tuple(Message("t") for _ in range(5))),
        Rpc(control=Control(ihave=(IHave("t", tuple(b"%d" % i for i in range(5))),))),
        Rpc(control=Control(iwant=(IWant(tuple(b"%d" % i for i in range(5))),))),
        Rpc(control=Control(graft=tuple(Graft("t") for _ in range(5)))),
        Rpc(control=Control(prune=(Prune("t", tuple(PeerInfo(b"p") for _ in range(5))),))),
        Rpc(control=Control(idontwant=(IDontWant(tuple(b"%d" % i for i in range(5))),))),
    ],
)
def test_count_caps(rpc: Rpc) -> None:
    small = Limits(max_subscriptions=4, max_messages=4, max_ihave_ids=4, max_iwant_ids=4, max_grafts=4,
                   max_prune_peers=4, max_idontwant_ids=4)
    with pytest.raises(CodecError):
        decode_rpc(encode_rpc(rpc), small)
    decode_rpc(encode_rpc(rpc))  # fine under the defaults


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(CodecError, match="exceeds"):
        decode_rpc(b"\xff" * 101, Limits(max_rpc_bytes=100))


def test_bad_fields() -> None:
    no_topic = pb.RPC()
    no_topic.publish.add(data=b"x")
    with pytest.raises(CodecError, match="topic"):
        decode_rpc(no_topic.SerializeToString())
    bad_utf8 = b"\x12\x04\x22\x02\xff\xfe"  # publish { topic: 0xfffe }
    with pytest.raises(CodecError, match="UTF-8"):
        decode_rpc(bad_utf8)
    with pytest.raises(CodecError):
        decode_rpc(encode_rpc(Rpc(publish=(Message("t", b"", b"x" * 200),))))
    with pytest.raises(CodecError):
        decode_rpc(b"\x0b" * 50)  # unterminated groups


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_only_codec_error(data: bytes) -> None:
    try:
        rpc = decode_rpc(data)
    except CodecError:
        return
    assert isinstance(rpc, Rpc)
    assert decode_rpc(encode_rpc(rpc)) == rpc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_valid_rpcs_only_codec_error(data: st.DataObject) -> None:
    raw = bytearray(encode_rpc(FULL))
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 16))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        decode_rpc(bytes(raw))
    except CodecError:
        pass
