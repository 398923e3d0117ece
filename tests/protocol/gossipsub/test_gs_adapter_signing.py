"""The adapter's answers to VerifySignature, and our own signatures.

Every libp2p key type a peer may sign with (Ed25519, secp256k1, RSA), with the
key inlined in ``from`` or carried in ``key``; and every way a message can
fail: a wrong signature, a ``key`` that is not the author's, a hashed peer ID
without a key, garbage. Nothing raises; failures are just "invalid".
"""

from __future__ import annotations

import hashlib
import os
import types

import pytest
from libp2p.crypto import rsa, secp256k1
from libp2p.peer.id import ID

from agentp2p.network.identity import Identity
from agentp2p.protocol.gossipsub.codec import signing_payload
from agentp2p.protocol.gossipsub.rpc import Message
from agentp2p.protocol.gossipsub.signing import SignatureVerifier, make_signer, peer_id_key


def _signed(private, peer_id: bytes, *, key: bytes | None = None, data: bytes = b"hello") -> Message:  # type: ignore[no-untyped-def]
    unsigned = Message("t", data, peer_id, (7).to_bytes(8, "big"), None, key)
    return Message("t", data, peer_id, unsigned.seqno, private.sign(signing_payload(unsigned)), key)


def _check(msg: Message) -> bool:
    return SignatureVerifier().verify(msg, signing_payload(msg))


def test_ed25519_inlined_key_verifies_and_a_flipped_bit_does_not() -> None:
    ident = Identity.generate()
    pid = ident.peer_id.to_bytes()
    assert peer_id_key(pid) is not None  # Ed25519 peer IDs inline the key
    msg = _signed(ident.private_key, pid)
    assert _check(msg)
    bad_sig = bytearray(msg.signature or b"")
    bad_sig[5] ^= 1
    assert not _check(Message(msg.topic, msg.data, msg.from_, msg.seqno, bytes(bad_sig), None))
    assert not _check(Message(msg.topic, b"tampered", msg.from_, msg.seqno, msg.signature, None))


def test_secp256k1_and_rsa_authors_verify() -> None:
    kp = secp256k1.create_new_key_pair()
    pid = ID.from_pubkey(kp.public_key).to_bytes()
    assert _check(_signed(kp.private_key, pid))  # inlined (37-byte key)
    assert _check(_signed(kp.private_key, pid, key=kp.public_key.serialize()))  # and carried

    kp = rsa.create_new_key_pair(2048)
    pid = ID.from_pubkey(kp.public_key).to_bytes()
    assert peer_id_key(pid) is None  # an RSA key is hashed into the peer ID
    assert _check(_signed(kp.private_key, pid, key=kp.public_key.serialize()))
    assert not _check(_signed(kp.private_key, pid))  # no key to check with


def test_a_key_that_is_not_the_authors_is_rejected_even_with_a_valid_signature() -> None:
    author, other = Identity.generate(), Identity.generate()
    msg = _signed(other.private_key, author.peer_id.to_bytes(), key=other.public_key.serialize())
    assert not _check(msg)
    kp = rsa.create_new_key_pair(2048)
    hashed = ID.from_pubkey(kp.public_key).to_bytes()
    # signed by the right key but claiming a hashed ID the key does not hash to
    wrong = b"\x12\x20" + hashlib.sha256(b"someone else").digest()
    assert not _check(_signed(kp.private_key, wrong, key=kp.public_key.serialize()))
    assert _check(_signed(kp.private_key, hashed, key=kp.public_key.serialize()))


@pytest.mark.parametrize(
    "from_, key, sig",
    [
        (b"\x12\x20" + hashlib.sha256(b"not a key").digest(), b"garbage key bytes", b"\x00" * 64),  # the killer
        (b"", None, b"\x00" * 64),
        (b"\xff\xff\xff", None, b"\x00" * 64),  # not a multihash
        (b"\x00\x05abcde", None, b"\x00" * 64),  # identity multihash of garbage
        (Identity.generate().peer_id.to_bytes(), None, b""),  # no signature
        (Identity.generate().peer_id.to_bytes(), None, b"\x01" * 63),  # short signature
        (Identity.generate().peer_id.to_bytes(), b"\x08\x01\x12\x20" + b"\x00" * 31, b"\x00" * 64),  # truncated key
    ],
    # Named, not by their bytes: three are random, and a parallel run needs the same ids in every worker.
    ids=["garbage-key", "empty-from", "not-a-multihash", "identity-multihash", "no-signature", "short-signature",
         "truncated-key"],
)
def test_garbage_never_raises_and_never_verifies(from_: bytes, key: bytes | None, sig: bytes) -> None:
    msg = Message("t", b"x", from_, b"\x00" * 8, sig, key)
    verifier = SignatureVerifier()
    assert verifier.verify(msg, signing_payload(msg)) is False
    assert verifier.stats.failed == 1


def test_random_bytes_fuzz() -> None:
    verifier = SignatureVerifier(max_keys=16)
    rng = os.urandom
    for _ in range(500):
        msg = Message("t", rng(8), rng(rng(1)[0] % 50), rng(8), rng(rng(1)[0] % 80),
                      rng(rng(1)[0] % 60) if rng(1)[0] & 1 else None)
        assert verifier.verify(msg, signing_payload(msg)) is False
    assert len(verifier._cache) <= 16  # the key cache stays bounded


def test_keys_are_cached_per_author() -> None:
    ident = Identity.generate()
    pid = ident.peer_id.to_bytes()
    verifier = SignatureVerifier()
    for k in range(20):
        msg = _signed(ident.private_key, pid, data=b"m%d" % k)
        assert verifier.verify(msg, signing_payload(msg))
    assert verifier.stats.key_cache_misses == 1 and verifier.stats.verified == 20


def test_our_signer_makes_messages_others_verify() -> None:
    ident = Identity.generate()
    sign, sign_key = make_signer(ident)
    assert sign_key is None  # Ed25519: the key is in our peer ID
    pid = ident.peer_id.to_bytes()
    unsigned = Message("t", b"ours", pid, b"\x00" * 8)
    msg = Message("t", b"ours", pid, b"\x00" * 8, sign(signing_payload(unsigned)))
    assert _check(msg)

    kp = rsa.create_new_key_pair(2048)
    rsa_ident = types.SimpleNamespace(private_key=kp.private_key, public_key=kp.public_key,
                                      peer_id=ID.from_pubkey(kp.public_key))
    sign, sign_key = make_signer(rsa_ident)
    assert sign_key == kp.public_key.serialize()
    pid = rsa_ident.peer_id.to_bytes()
    unsigned = Message("t", b"ours", pid, b"\x00" * 8, None, sign_key)
    assert _check(Message("t", b"ours", pid, b"\x00" * 8, sign(signing_payload(unsigned)), sign_key))
