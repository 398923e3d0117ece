"""End-to-end sealing of message payloads: X25519 + HKDF-SHA256 + AES-256-GCM.

Why: a signed message is authentic but readable by anyone who stores or
relays it. Sealing makes the payload readable only by the recipient.

Scheme (ephemeral-static, like HPKE base mode / ECIES):

* The recipient's static X25519 key is derived from its Ed25519 identity key
  with the standard birational map (libsodium ``ed25519_pk_to_curve25519``),
  so no extra key needs publishing: the recipient's peer ID is enough.
* Per message, the sender makes a fresh ephemeral X25519 key pair and computes
  ``shared = X25519(ephemeral_private, recipient_public)``.
* ``key = HKDF-SHA256(shared, salt=empty, info=INFO || lp(sender) ||
  lp(recipient) || lp(ephemeral_public) || lp(recipient_x25519_public))``:
  the key is bound to who sends to whom, so a ciphertext lifted into a message
  "from" someone else does not decrypt.
* AES-256-GCM with a random 96-bit nonce (the key is fresh per message, so a
  nonce can never repeat under one key; the random nonce is belt and braces)
  and associated data = the envelope header (id, sender, recipient, type,
  timestamp, flags), so the sealed payload cannot be moved to another message.

The whole envelope is then signed (signing covers the sealed bytes), so the
sender is authenticated too; sealing alone would not authenticate it, since
anyone can encrypt to a public key.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.signing import VerifyKey

from agentp2p.pb.msg_pb2 import ENVELOPE_FLAG_SEALED, Envelope, SealedPayload
from agentp2p.security.rejections import MessageRejected, RejectReason
from agentp2p.security.signing import public_key_of

__all__ = [
    "INFO",
    "header_aad",
    "open_envelope",
    "open_payload",
    "seal_envelope",
    "seal_payload",
    "x25519_private_from_ed25519",
    "x25519_public_from_ed25519",
]

INFO = b"agentp2p/msg/1.0.0 seal\x00"
NONCE_BYTES = 12
_U32 = struct.Struct(">I")
_HDR_TAIL = struct.Struct(">QI")


def _lp(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _raw(pub: X25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_public_from_ed25519(key: Ed25519PublicKey) -> X25519PublicKey:
    """The recipient's static X25519 public key, from its Ed25519 identity key."""
    curve = VerifyKey(key.to_bytes()).to_curve25519_public_key()
    return X25519PublicKey.from_public_bytes(bytes(curve))


def x25519_private_from_ed25519(key: Ed25519PrivateKey) -> X25519PrivateKey:
    """Our static X25519 private key, from our Ed25519 identity key."""
    return X25519PrivateKey.from_private_bytes(bytes(key.impl.to_curve25519_private_key()))


def header_aad(env: Envelope) -> bytes:
    """Associated data: the envelope fields fixed before sealing.

    ``session_id``/``seq`` are left out on purpose: they are assigned by the
    session after the application hands the message over (and are covered by
    the signature anyway).
    """
    return b"".join(
        (
            _lp(env.id.encode()),
            _lp(env.sender),
            _lp(env.recipient),
            _lp(env.type.encode()),
            _HDR_TAIL.pack(env.timestamp_ms, env.flags | ENVELOPE_FLAG_SEALED),
        )
    )


def _derive_key(shared: bytes, sender: bytes, recipient: bytes, eph: bytes, static: bytes) -> bytes:
    info = INFO + _lp(sender) + _lp(recipient) + _lp(eph) + _lp(static)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seal_payload(
    plaintext: bytes, *, sender: bytes, recipient: bytes, recipient_key: Ed25519PublicKey, aad: bytes
) -> bytes:
    """Encrypt ``plaintext`` to ``recipient``; returns a serialized SealedPayload."""
    static = x25519_public_from_ed25519(recipient_key)
    eph = X25519PrivateKey.generate()
    eph_pub = _raw(eph.public_key())
    key = _derive_key(eph.exchange(static), sender, recipient, eph_pub, _raw(static))
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plaintext, aad)
    return SealedPayload(ephemeral_public_key=eph_pub, nonce=nonce, ciphertext=ct).SerializeToString()


def open_payload(
    sealed: bytes, *, sender: bytes, recipient: bytes, recipient_private: Ed25519PrivateKey, aad: bytes
) -> bytes:
    """Decrypt a serialized SealedPayload; raises :class:`MessageRejected`."""
    try:
        box = SealedPayload.FromString(sealed)
    except DecodeError as exc:
        raise MessageRejected(RejectReason.MALFORMED, "sealed payload does not parse") from exc
    if len(box.ephemeral_public_key) != 32 or len(box.nonce) != NONCE_BYTES or len(box.ciphertext) < 16:
        raise MessageRejected(RejectReason.MALFORMED, "sealed payload fields have wrong sizes")
    static_priv = x25519_private_from_ed25519(recipient_private)
    try:
        shared = static_priv.exchange(X25519PublicKey.from_public_bytes(box.ephemeral_public_key))
    except ValueError as exc:  # low-order point: all-zero shared secret
        raise MessageRejected(RejectReason.MALFORMED, "invalid ephemeral key") from exc
    key = _derive_key(shared, sender, recipient, box.ephemeral_public_key, _raw(static_priv.public_key()))
    try:
        return AESGCM(key).decrypt(box.nonce, box.ciphertext, aad)
    except InvalidTag as exc:
        raise MessageRejected(
            RejectReason.TAMPERED, "sealed payload does not authenticate (tampered, or not for us)"
        ) from exc


def seal_envelope(env: Envelope, recipient_key: Ed25519PublicKey | None = None) -> None:
    """Replace ``env.payload`` by its sealed form and set the SEALED flag.

    Call before signing. ``recipient_key`` defaults to the key inlined in
    ``env.recipient`` (Ed25519 peer IDs carry it).
    """
    if env.flags & ENVELOPE_FLAG_SEALED:
        raise ValueError("envelope is already sealed")
    key = recipient_key if recipient_key is not None else public_key_of(env.recipient)
    env.payload = seal_payload(
        env.payload, sender=env.sender, recipient=env.recipient, recipient_key=key, aad=header_aad(env)
    )
    env.flags |= ENVELOPE_FLAG_SEALED


def open_envelope(env: Envelope, private_key: Ed25519PrivateKey) -> bytes:
    """The plaintext payload of ``env`` (sealed or not) for its recipient."""
    if not env.flags & ENVELOPE_FLAG_SEALED:
        return env.payload
    return open_payload(
        env.payload,
        sender=env.sender,
        recipient=env.recipient,
        recipient_private=private_key,
        aad=header_aad(env),
    )
