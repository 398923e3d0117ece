"""End-to-end sealing: confidentiality and integrity of payloads."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from agentp2p.pb.msg_pb2 import ENVELOPE_FLAG_SEALED, Envelope, SealedPayload
from agentp2p.security.rejections import MessageRejected, RejectReason
from agentp2p.security.sealing import (
    open_envelope,
    seal_envelope,
    x25519_private_from_ed25519,
    x25519_public_from_ed25519,
)
from agentp2p.security.signing import sign_envelope, verify_envelope

ALICE, BOB, CAROL = create_new_key_pair(), create_new_key_pair(), create_new_key_pair()
SECRET = b"the eagle lands at dawn" * 4


def pid(kp) -> bytes:  # noqa: ANN001
    return ID.from_pubkey(kp.public_key).to_bytes()


def sealed(plaintext: bytes = SECRET) -> Envelope:
    env = Envelope(id="m1", sender=pid(ALICE), recipient=pid(BOB), type="t", payload=plaintext, timestamp_ms=5)
    seal_envelope(env)
    return env


def rejection(env: Envelope, key=BOB.private_key) -> RejectReason:  # noqa: ANN001
    with pytest.raises(MessageRejected) as info:
        open_envelope(env, key)
    return info.value.reason


def test_round_trip_and_flag() -> None:
    env = sealed()
    assert env.flags & ENVELOPE_FLAG_SEALED
    assert SECRET not in env.payload
    assert open_envelope(env, BOB.private_key) == SECRET


def test_sealed_then_signed_envelope_verifies_and_opens() -> None:
    env = sealed()
    sign_envelope(env, ALICE.private_key)
    verify_envelope(env, authenticated_peer=pid(ALICE), local_peer=pid(BOB))
    assert open_envelope(env, BOB.private_key) == SECRET


def test_x25519_keys_derived_from_identity_match() -> None:
    priv = x25519_private_from_ed25519(BOB.private_key)
    assert priv.public_key().public_bytes_raw() == x25519_public_from_ed25519(BOB.public_key).public_bytes_raw()


def test_two_seals_of_same_plaintext_differ() -> None:
    a, b = SealedPayload.FromString(sealed().payload), SealedPayload.FromString(sealed().payload)
    assert a.ephemeral_public_key != b.ephemeral_public_key
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def _mutate(env: Envelope, field: str) -> None:
    box = SealedPayload.FromString(env.payload)
    value = bytearray(getattr(box, field))
    value[0] ^= 1
    setattr(box, field, bytes(value))
    env.payload = box.SerializeToString()


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "ephemeral_public_key"])
def test_tampered_sealed_payload_is_rejected(field: str) -> None:
    env = sealed()
    _mutate(env, field)
    assert rejection(env) in (RejectReason.TAMPERED, RejectReason.MALFORMED)


@pytest.mark.parametrize("field,value", [("id", "m2"), ("type", "x"), ("timestamp_ms", 6), ("sender", b"zz")])
def test_header_is_bound_as_associated_data(field: str, value: object) -> None:
    env = sealed()
    setattr(env, field, value)
    assert rejection(env) is RejectReason.TAMPERED


def test_wrong_recipient_cannot_open() -> None:
    assert rejection(sealed(), key=CAROL.private_key) is RejectReason.TAMPERED


def test_garbage_sealed_payload_is_malformed() -> None:
    env = sealed()
    env.payload = b"\xff\xff\xff"
    assert rejection(env) is RejectReason.MALFORMED
    env.payload = SealedPayload(ephemeral_public_key=b"x", nonce=b"n", ciphertext=b"c").SerializeToString()
    assert rejection(env) is RejectReason.MALFORMED


def test_low_order_ephemeral_key_is_refused() -> None:
    env = sealed()
    box = SealedPayload.FromString(env.payload)
    box.ephemeral_public_key = bytes(32)  # the identity point: shared secret all zero
    env.payload = box.SerializeToString()
    assert rejection(env) is RejectReason.MALFORMED


def test_unsealed_payload_opens_as_is() -> None:
    env = Envelope(id="p", payload=b"plain")
    assert open_envelope(env, BOB.private_key) == b"plain"
    seal_envelope(Envelope(id="p", sender=pid(ALICE), recipient=pid(BOB), payload=b"x"))
    with pytest.raises(ValueError):
        seal_envelope(sealed())
