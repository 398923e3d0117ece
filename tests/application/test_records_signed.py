"""The trust gate: signed.open and the DHT validator reject forged, expired,
replayed and tampered records; select() never lets an older record win."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.envelope import seal_record as seal_peer_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord
from libp2p.peer.pb import envelope_pb2
from libp2p.records.utils import InvalidRecordType
from libp2p.records.validator import NamespacedValidator
from tests.application.records_fixtures import HOUR, NOW, keypair, make_record

from agentp2p.application.records import (
    MAX_CLOCK_SKEW_MS,
    RECORD_DOMAIN,
    RECORD_PAYLOAD_TYPE,
    AgentRecordValidator,
    InvalidRecord,
    Reason,
    open_record,
    record_key,
    seal_record,
)
from agentp2p.security.envelope import Envelope, seal

A, B = keypair(1), keypair(2)
PEER_A = ID.from_pubkey(A.public_key)


def _reason(data: bytes, **kw: object) -> Reason:
    with pytest.raises(InvalidRecord) as info:
        open_record(data, **{"now_ms": NOW, **kw})  # type: ignore[arg-type]
    return info.value.reason


def test_seal_open_round_trip() -> None:
    record = make_record(A)
    assert open_record(seal_record(record, A.private_key), now_ms=NOW, expected_peer_id=PEER_A) == record


def test_payload_type_constant() -> None:
    assert RECORD_PAYLOAD_TYPE == bytes([0x81, 0x8C, 0xC0, 0x01])  # uvarint(0x300601)
    assert RECORD_DOMAIN == "agentp2p-agent-record"


def test_refuses_to_seal_with_someone_elses_key() -> None:
    with pytest.raises(InvalidRecord):
        seal_record(make_record(A), B.private_key)


def test_forged_record_rejected() -> None:
    """B signs a record claiming to be A (A's key and peer ID inside)."""
    payload = make_record(A).to_bytes()
    forged = seal(RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, payload, B.private_key).to_bytes()
    assert _reason(forged) is Reason.PEER_ID_MISMATCH


def test_forged_signature_under_victims_key_rejected() -> None:
    """A's key in the envelope, but the signature is B's."""
    payload = make_record(A).to_bytes()
    by_b = seal(RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, payload, B.private_key)
    forged = Envelope(A.public_key, by_b.payload_type, by_b.payload, by_b.signature).to_bytes()
    assert _reason(forged) is Reason.SIGNATURE


def test_tampered_payload_rejected() -> None:
    msg = envelope_pb2.Envelope()
    msg.ParseFromString(seal_record(make_record(A), A.private_key))
    msg.payload = msg.payload.replace(b"a test agent", b"a evil agent")
    assert _reason(msg.SerializeToString()) is Reason.SIGNATURE


def test_expired_record_rejected() -> None:
    data = seal_record(make_record(A, ttl_ms=HOUR), A.private_key)
    open_record(data, now_ms=NOW + HOUR - 1)
    assert _reason(data, now_ms=NOW + HOUR) is Reason.EXPIRED


def test_record_from_the_future_rejected() -> None:
    data = seal_record(make_record(A, now_ms=NOW + MAX_CLOCK_SKEW_MS + 1), A.private_key)
    assert _reason(data) is Reason.NOT_YET_VALID


def test_wrong_expected_peer_rejected() -> None:
    data = seal_record(make_record(A), A.private_key)
    assert _reason(data, expected_peer_id=ID.from_pubkey(B.public_key)) is Reason.PEER_ID_MISMATCH


def test_wrong_domain_rejected() -> None:
    payload = make_record(A).to_bytes()
    other = seal("libp2p-peer-record", RECORD_PAYLOAD_TYPE, payload, A.private_key).to_bytes()
    assert _reason(other) is Reason.SIGNATURE


def test_peer_record_envelope_is_not_an_agent_record() -> None:
    rec = PeerRecord(PEER_A, [], seq=1)
    data = seal_peer_record(rec, A.private_key).marshal_envelope()
    assert _reason(data) is Reason.PAYLOAD_TYPE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_invalid_record(data: bytes) -> None:
    try:
        open_record(data, now_ms=NOW)
    except InvalidRecord:
        pass


GOOD = seal_record(make_record(A), A.private_key)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_envelopes_only_raise_invalid_record(data: st.DataObject) -> None:
    buf = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del buf[data.draw(st.integers(0, len(buf) - 1)):]
    try:
        open_record(bytes(buf), now_ms=NOW)
    except InvalidRecord:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_validly_signed_garbage_payload_only_raises_invalid_record(payload: bytes) -> None:
    """The signature is fine, so decoding of the record itself is exercised."""
    data = seal(RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, payload, A.private_key).to_bytes()
    with pytest.raises(InvalidRecord):
        open_record(data, now_ms=NOW)


# --- validator ----------------------------------------------------------------
class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_validator_accepts_current_record_under_its_key() -> None:
    v = AgentRecordValidator(Clock(NOW))
    v.validate(record_key(PEER_A), GOOD)


@pytest.mark.parametrize(
    "key",
    [record_key(ID.from_pubkey(B.public_key)), "/agentrec/", "/agentrec/notbase58!", "/pk/x"],
)
def test_validator_rejects_record_under_wrong_key(key: str) -> None:
    with pytest.raises(InvalidRecordType):
        AgentRecordValidator(Clock(NOW)).validate(key, GOOD)


def test_validator_rejects_expired_and_forged() -> None:
    v = AgentRecordValidator(Clock(NOW + 2 * HOUR))
    with pytest.raises(InvalidRecordType):
        v.validate(record_key(PEER_A), GOOD)
    forged = seal(RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, make_record(A).to_bytes(), B.private_key).to_bytes()
    with pytest.raises(InvalidRecordType):
        AgentRecordValidator(Clock(NOW)).validate(record_key(PEER_A), forged)


def test_select_prefers_highest_seq_and_replay_never_wins() -> None:
    v = AgentRecordValidator(Clock(NOW))
    old = seal_record(make_record(A, seq=1), A.private_key)
    new = seal_record(make_record(A, seq=2), A.private_key)
    key = record_key(PEER_A)
    assert v.select(key, [old, new]) == 1
    assert v.select(key, [new, old]) == 0  # DHT PUT: existing newer kept, replay refused


def test_select_ties_on_seq_go_to_later_expiry_then_first() -> None:
    v = AgentRecordValidator(Clock(NOW))
    short = seal_record(make_record(A, seq=5, ttl_ms=HOUR), A.private_key)
    long = seal_record(make_record(A, seq=5, ttl_ms=2 * HOUR), A.private_key)
    key = record_key(PEER_A)
    assert v.select(key, [short, long]) == 1
    assert v.select(key, [long, short]) == 0
    assert v.select(key, [short, short]) == 0


def test_select_skips_invalid_values() -> None:
    clock = Clock(NOW)
    v = AgentRecordValidator(clock)
    key = record_key(PEER_A)
    expired_high_seq = seal_record(make_record(A, seq=9, now_ms=NOW - HOUR, ttl_ms=HOUR), A.private_key)
    forged_high_seq = seal(
        RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, make_record(A, seq=10).to_bytes(), B.private_key
    ).to_bytes()
    current = seal_record(make_record(A, seq=3), A.private_key)
    assert v.select(key, [expired_high_seq, forged_high_seq, b"junk", current]) == 3
    with pytest.raises(InvalidRecordType):
        v.select(key, [b"junk", forged_high_seq])


def test_registers_with_py_libp2p_namespaced_validator() -> None:
    """The DHT's own dispatcher routes /agentrec/ keys to us."""
    nv = NamespacedValidator({"agentrec": AgentRecordValidator(Clock(NOW))}, strict_validation=True)
    key = record_key(PEER_A)
    nv.validate(key, GOOD)
    newer = seal_record(make_record(A, seq=2), A.private_key)
    assert nv.select(key, [GOOD, newer]) == 1
    assert hasattr(KadDHT, "register_validator")
