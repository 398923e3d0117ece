"""AgentRecord/Capability values: encoding round trips and field rules."""

from __future__ import annotations

import dataclasses

import pytest
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from tests.application.records_fixtures import NOW, TRANSLATE, keypair, make_record

from agentp2p.application.records import AgentRecord, Capability, InvalidRecord, Reason
from agentp2p.application.records.model import MAX_PAYLOAD_BYTES, MAX_TTL_MS
from agentp2p.pb import record_pb2


def test_bytes_round_trip() -> None:
    record = make_record(keypair(1))
    again = AgentRecord.from_bytes(record.to_bytes())
    assert again == record
    assert again.peer_id == ID.from_pubkey(keypair(1).public_key)
    assert again.addrs == (Multiaddr("/ip4/127.0.0.1/tcp/4001"),)
    assert again.capability("translate") == TRANSLATE
    assert TRANSLATE.input_schema == {"type": "object", "properties": {"text": {"type": "string"}}}


def test_encoding_is_deterministic_despite_map_order() -> None:
    kp = keypair(1)
    a = dataclasses.replace(make_record(kp), metadata={"a": "1", "b": "2"})
    b = dataclasses.replace(make_record(kp), metadata={"b": "2", "a": "1"})
    assert a.to_bytes() == b.to_bytes()


def _broken(**changes: object) -> AgentRecord:
    return dataclasses.replace(make_record(keypair(1)), **changes)


def _cap(**changes: object) -> AgentRecord:
    return _broken(capabilities=(dataclasses.replace(TRANSLATE, **changes),))


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(lambda: _cap(input_schema_json="[1, 2]"), id="schema-not-object"),
        pytest.param(lambda: _cap(output_schema_json="{not json"), id="schema-not-json"),
        pytest.param(lambda: _cap(extra_json='"text"'), id="extra-not-object"),
        pytest.param(lambda: _cap(name=""), id="empty-cap-name"),
        pytest.param(lambda: _cap(name=" translate"), id="blank-padded-cap-name"),
        pytest.param(lambda: _cap(name="trans\nlate"), id="control-char"),
        pytest.param(lambda: _cap(tags=("a", "a")), id="duplicate-tags"),
        pytest.param(lambda: _cap(tags=tuple(str(i) for i in range(33))), id="too-many-tags"),
        pytest.param(lambda: _broken(capabilities=(TRANSLATE, TRANSLATE)), id="duplicate-caps"),
        pytest.param(lambda: _broken(name=""), id="empty-name"),
        pytest.param(lambda: _broken(description="x" * 5000), id="long-description"),
        pytest.param(lambda: _broken(metadata={"k": "v" * 9000}), id="long-metadata"),
        pytest.param(lambda: _broken(expires_at_ms=NOW), id="expires-before-issue"),
        pytest.param(lambda: _broken(expires_at_ms=NOW + MAX_TTL_MS + 1), id="ttl-too-long"),
        pytest.param(lambda: _broken(seq=-1), id="negative-seq"),
    ],
)
def test_field_rules(record) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecord) as info:
        record().to_bytes()
    assert info.value.reason is Reason.FIELD


def test_peer_id_must_derive_from_key() -> None:
    record = _broken(peer_id=ID.from_pubkey(keypair(2).public_key))
    with pytest.raises(InvalidRecord) as info:
        record.validate()
    assert info.value.reason is Reason.PEER_ID_MISMATCH


def test_too_large_payload() -> None:
    caps = tuple(
        Capability(name=f"c{i}", description="d" * 4000) for i in range(13)
    )
    with pytest.raises(InvalidRecord) as info:
        _broken(capabilities=caps).to_bytes()
    assert info.value.reason is Reason.TOO_LARGE
    with pytest.raises(InvalidRecord) as info:
        AgentRecord.from_bytes(b"\x00" * (MAX_PAYLOAD_BYTES + 1))
    assert info.value.reason is Reason.TOO_LARGE


def test_decoding_rejects_non_canonical_multiaddr() -> None:
    msg = make_record(keypair(1)).to_protobuf()
    msg.addrs[0] = b"\x04\x7f"  # py-multiaddr would read this as /ip4/0.0.0.127
    with pytest.raises(InvalidRecord):
        AgentRecord.from_bytes(msg.SerializeToString())


def test_decoding_rejects_bad_public_key() -> None:
    msg = make_record(keypair(1)).to_protobuf()
    msg.public_key = b"\x08\x01\x12\x03abc"
    with pytest.raises(InvalidRecord) as info:
        AgentRecord.from_bytes(msg.SerializeToString())
    assert info.value.reason is Reason.MALFORMED


def test_unknown_fields_are_ignored() -> None:
    """Forward compatibility: a newer writer's extra field does not break us."""
    record = make_record(keypair(1))
    extra = record_pb2.AgentRecord()
    extra.ParseFromString(record.to_bytes())
    data = extra.SerializeToString() + b"\xa2\x06\x02hi"  # field 100, bytes "hi"
    assert AgentRecord.from_bytes(data) == record
