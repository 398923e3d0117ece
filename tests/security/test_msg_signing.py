"""Envelope signatures: tampering and forged senders are rejected with a reason."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as secp_key_pair
from libp2p.peer.id import ID

from agentp2p.pb.msg_pb2 import Envelope
from agentp2p.security.rejections import MessageRejected, RejectCounters, RejectReason
from agentp2p.security.replay import ReplayGuard
from agentp2p.security.screen import InboundScreen
from agentp2p.security.signing import public_key_of, sign_envelope, signing_bytes, verify_envelope

ALICE, BOB, MALLORY = create_new_key_pair(), create_new_key_pair(), create_new_key_pair()


def pid(kp) -> bytes:  # noqa: ANN001
    return ID.from_pubkey(kp.public_key).to_bytes()


def signed(sender=ALICE, **fields) -> Envelope:  # noqa: ANN001
    env = Envelope(
        id="01J0000000000000000000000A",
        sender=pid(sender),
        recipient=pid(BOB),
        type="chat",
        payload=b"hello",
        timestamp_ms=1_700_000_000_000,
        session_id=b"s" * 16,
        seq=1,
    )
    for k, v in fields.items():
        setattr(env, k, v)
    sign_envelope(env, sender.private_key)
    return env


def reason(env: Envelope, peer: bytes | None = None) -> RejectReason | None:
    try:
        verify_envelope(env, authenticated_peer=peer if peer is not None else pid(ALICE), local_peer=pid(BOB))
    except MessageRejected as exc:
        return exc.reason
    return None


def test_valid_message_verifies_and_key_comes_from_peer_id() -> None:
    env = signed()
    assert reason(env) is None
    assert public_key_of(ID(env.sender)).to_bytes() == ALICE.public_key.to_bytes()


@pytest.mark.parametrize(
    "field,value",
    [
        ("id", "other"),
        ("type", "admin"),
        ("payload", b"HELLO"),
        ("timestamp_ms", 1),
        ("session_id", b"t" * 16),
        ("seq", 2),
        ("flags", 1),
    ],
)
def test_any_changed_field_is_tampered(field: str, value: object) -> None:
    env = signed()
    setattr(env, field, value)
    assert reason(env) is RejectReason.TAMPERED


def test_claiming_another_sender_is_forged() -> None:
    # Mallory signs with her key but claims to be Alice: the stream says Mallory.
    env = signed(sender=MALLORY)
    env.sender = pid(ALICE)
    assert reason(env, peer=pid(MALLORY)) is RejectReason.FORGED
    # ...and over Alice's own stream the signature does not match Alice's key.
    assert reason(env, peer=pid(ALICE)) is RejectReason.TAMPERED


def test_message_for_someone_else_is_forged() -> None:
    assert reason(signed(recipient=pid(MALLORY))) is RejectReason.FORGED


def test_signer_must_be_the_sender() -> None:
    env = Envelope(id="x", sender=pid(ALICE), recipient=pid(BOB))
    with pytest.raises(ValueError):
        sign_envelope(env, MALLORY.private_key)


def test_non_ed25519_sender_cannot_be_verified() -> None:
    secp = secp_key_pair()
    env = signed()
    env.sender = ID.from_pubkey(secp.public_key).to_bytes()
    assert reason(env, peer=env.sender) is RejectReason.FORGED


@pytest.mark.parametrize("field,value", [("signature", b""), ("signature", b"x" * 63), ("id", ""), ("id", "x" * 200)])
def test_malformed_fields(field: str, value: object) -> None:
    env = signed()
    setattr(env, field, value)
    assert reason(env) is RejectReason.MALFORMED


def test_canonical_bytes_are_length_prefixed_not_ambiguous() -> None:
    a = Envelope(id="ab", type="c")
    b = Envelope(id="a", type="bc")
    assert signing_bytes(a) != signing_bytes(b)


def test_screen_counts_each_rejection_by_reason() -> None:
    screen = InboundScreen(pid(BOB), guard=ReplayGuard(), counters=RejectCounters())
    now = 1_700_000_000_000
    good = signed()
    assert screen.check(good, stream_peer=pid(ALICE), now_ms=now) is None
    assert screen.check(good, stream_peer=pid(ALICE), now_ms=now) is RejectReason.REPLAYED
    bad = signed(id="2")
    bad.payload = b"changed"
    assert screen.check(bad, stream_peer=pid(ALICE), now_ms=now) is RejectReason.TAMPERED
    assert screen.check(signed(id="3"), stream_peer=pid(MALLORY), now_ms=now) is RejectReason.FORGED
    assert screen.counters.snapshot() == {
        "malformed": 0,
        "forged": 1,
        "tampered": 1,
        "replayed": 1,
        "stale": 0,
    }
    # A tampered copy must not burn the id: the genuine message still gets in.
    assert screen.check(signed(id="2"), stream_peer=pid(ALICE), now_ms=now) is None
