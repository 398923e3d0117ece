"""RFC 0002 signed envelopes: the signing rules, tamper detection, and
compatibility with py-libp2p's (go-libp2p-compatible) peer-record envelopes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair
from libp2p.peer.envelope import consume_envelope, seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord
from libp2p.peer.pb import envelope_pb2
from multiaddr import Multiaddr

from agentp2p.security.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    EnvelopeError,
    open_envelope,
    seal,
    signing_bytes,
)

DOMAIN = "test-domain"
PTYPE = b"\x81\x8c\xc0\x01"
KEY = create_new_key_pair(b"\x01" * 32).private_key


def test_signing_bytes_are_varint_length_prefixed_fields() -> None:
    # Known answer straight from the spec's definition.
    assert signing_bytes("abc", b"\x01", b"xy") == bytes.fromhex("03616263" "0101" "027879")
    # Lengths >= 128 need two varint bytes.
    out = signing_bytes("d", b"t", b"p" * 200)
    assert out[:5] == b"\x01d\x01t\xc8" and out[5] == 0x01 and out[6:] == b"p" * 200


def test_empty_domain_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        signing_bytes("", PTYPE, b"x")


def test_seal_open_round_trip() -> None:
    env = seal(DOMAIN, PTYPE, b"hello", KEY)
    opened = open_envelope(env.to_bytes(), DOMAIN, PTYPE)
    assert opened == env
    assert opened.public_key.to_bytes() == KEY.get_public_key().to_bytes()


def test_encoding_is_deterministic() -> None:
    # Ed25519 signatures are deterministic, so identical input gives identical bytes.
    assert seal(DOMAIN, PTYPE, b"x", KEY).to_bytes() == seal(DOMAIN, PTYPE, b"x", KEY).to_bytes()


def _reencode(env: Envelope, **changes: bytes) -> bytes:
    msg = envelope_pb2.Envelope()
    msg.ParseFromString(env.to_bytes())
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg.SerializeToString()


@pytest.mark.parametrize(
    "changes",
    [
        {"payload": b"hellO"},
        {"payload_type": b"\x81\x8c\xc0\x02"},
        {"signature": b"\x00" * 64},
    ],
    ids=["payload", "payload_type", "signature"],
)
def test_tampering_invalidates(changes: dict[str, bytes]) -> None:
    data = _reencode(seal(DOMAIN, PTYPE, b"hello", KEY), **changes)
    with pytest.raises(EnvelopeError):
        open_envelope(data, DOMAIN)


def test_wrong_domain_invalidates() -> None:
    data = seal(DOMAIN, PTYPE, b"hello", KEY).to_bytes()
    with pytest.raises(EnvelopeError, match="signature"):
        open_envelope(data, "other-domain")


def test_wrong_expected_payload_type() -> None:
    data = seal(DOMAIN, PTYPE, b"hello", KEY).to_bytes()
    with pytest.raises(EnvelopeError, match="payload type"):
        open_envelope(data, DOMAIN, b"\x03\x01")


def test_substituted_key_invalidates() -> None:
    other = create_new_key_pair(b"\x02" * 32).public_key
    env = seal(DOMAIN, PTYPE, b"hello", KEY)
    forged = Envelope(other, env.payload_type, env.payload, env.signature)
    with pytest.raises(EnvelopeError):
        open_envelope(forged.to_bytes(), DOMAIN)


def test_secp256k1_keys_work_too() -> None:
    key = create_secp256k1_key_pair().private_key
    env = seal(DOMAIN, PTYPE, b"hello", key)
    assert open_envelope(env.to_bytes(), DOMAIN).payload == b"hello"
    with pytest.raises(EnvelopeError):
        open_envelope(_reencode(env, signature=b"junk"), DOMAIN)


def test_oversized_input_refused_unparsed() -> None:
    with pytest.raises(EnvelopeError, match="too large"):
        open_envelope(b"\x00" * (MAX_ENVELOPE_BYTES + 1), DOMAIN)


def _peer_record(kp) -> PeerRecord:  # type: ignore[no-untyped-def]
    return PeerRecord(ID.from_pubkey(kp.public_key), [Multiaddr("/ip4/127.0.0.1/tcp/4001")], seq=7)


def test_py_libp2p_peer_record_envelope_verifies_with_our_code() -> None:
    """py-libp2p seals peer records the go-libp2p way; we must accept them."""
    kp = create_new_key_pair(b"\x03" * 32)
    theirs = seal_record(_peer_record(kp), kp.private_key).marshal_envelope()
    env = open_envelope(theirs, "libp2p-peer-record", b"\x03\x01")
    assert env.public_key.to_bytes() == kp.public_key.to_bytes()
    with pytest.raises(EnvelopeError):
        open_envelope(theirs, "agentp2p-agent-record")


def test_our_envelope_verifies_with_py_libp2p() -> None:
    kp = create_new_key_pair(b"\x04" * 32)
    record = _peer_record(kp)
    ours = seal("libp2p-peer-record", b"\x03\x01", record.marshal_record(), kp.private_key)
    _, decoded = consume_envelope(ours.to_bytes(), "libp2p-peer-record")
    assert decoded.seq == 7
    # Same key, same input, deterministic Ed25519: byte-identical to theirs.
    assert ours.to_bytes() == seal_record(record, kp.private_key).marshal_envelope()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_envelope_error(data: bytes) -> None:
    try:
        open_envelope(data, DOMAIN)
    except EnvelopeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_envelopes_only_raise_envelope_error(data: st.DataObject) -> None:
    good = bytearray(seal(DOMAIN, PTYPE, b"payload", KEY).to_bytes())
    i = data.draw(st.integers(0, len(good) - 1))
    good[i] = data.draw(st.integers(0, 255))
    try:
        open_envelope(bytes(good), DOMAIN)
    except EnvelopeError:
        pass
