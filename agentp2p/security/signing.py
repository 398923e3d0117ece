"""Ed25519 signatures over message envelopes (/agentp2p/msg/1.0.0).

What is signed is not the protobuf encoding (protobuf does not promise a
canonical serialization, and a re-encoding relay could break signatures) but
an explicit byte string::

    DOMAIN
    u32(len(id))        || id (UTF-8)
    u32(len(sender))    || sender      (peer ID bytes)
    u32(len(recipient)) || recipient
    u32(len(type))      || type (UTF-8)
    u32(len(payload))   || payload     (ciphertext when sealed)
    u64(timestamp_ms) || u32(len(session_id)) || session_id || u64(seq) || u32(flags)

(big-endian). Every field except the signature is covered, each length
prefixed so no two different envelopes encode alike; the domain string keeps
these signatures from ever being valid for another purpose.

The signer is the sender's libp2p identity key. Its public key is not sent:
Ed25519 peer IDs inline the key (identity multihash), so the verifier derives
it from ``sender``. A message is accepted only if (1) ``sender`` is the peer
the stream is authenticated as (the Noise handshake proved that), (2) the
key inlined in ``sender`` verifies the signature. So no peer can send a message
"from" someone else, and nobody can alter one in transit or in storage.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyType
from libp2p.peer.id import ID

from agentp2p.pb.msg_pb2 import Envelope
from agentp2p.security.rejections import MessageRejected, RejectReason

__all__ = [
    "DOMAIN",
    "public_key_of",
    "sign_envelope",
    "signing_bytes",
    "verify_envelope",
]

DOMAIN = b"agentp2p/msg/1.0.0 envelope\x00"

#: Field bounds: generous, but a peer cannot make us hash megabytes of "id".
MAX_ID_BYTES = 128
MAX_TYPE_BYTES = 256
MAX_PEER_ID_BYTES = 128
SESSION_ID_BYTES = 16
ED25519_SIGNATURE_BYTES = 64

_U32 = struct.Struct(">I")
_TAIL = struct.Struct(">QI")


def _lp(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def signing_bytes(env: Envelope) -> bytes:
    """The canonical byte string the signature covers (see module docstring)."""
    return b"".join(
        (
            DOMAIN,
            _lp(env.id.encode()),
            _lp(env.sender),
            _lp(env.recipient),
            _lp(env.type.encode()),
            _lp(env.payload),
            _TAIL.pack(env.timestamp_ms, len(env.session_id)),
            env.session_id,
            _TAIL.pack(env.seq, env.flags),
        )
    )


def sign_envelope(env: Envelope, key: Ed25519PrivateKey) -> None:
    """Set ``env.signature``; ``env.sender`` must be the peer ID of ``key``."""
    if ID.from_pubkey(key.get_public_key()).to_bytes() != env.sender:
        raise ValueError("envelope sender is not the peer ID of the signing key")
    env.signature = key.sign(signing_bytes(env))


@lru_cache(maxsize=4096)
def _key_from_peer_id(peer_id: bytes) -> Ed25519PublicKey:
    # Cached: extracting means a multihash decode and a protobuf parse, and
    # the same few peers send us thousands of messages.
    try:
        key = ID(peer_id).extract_public_key()
    except Exception:  # noqa: BLE001 - any decoding failure is the peer's
        key = None
    if key is None:
        raise MessageRejected(RejectReason.FORGED, "sender peer ID does not inline a public key")
    if key.get_type() != KeyType.Ed25519 or not isinstance(key, Ed25519PublicKey):
        raise MessageRejected(RejectReason.FORGED, "sender key is not Ed25519")
    return key


def public_key_of(peer_id: ID | bytes) -> Ed25519PublicKey:
    """The Ed25519 public key inlined in an Ed25519 peer ID.

    Raises :class:`MessageRejected` (FORGED) for peer IDs that hash their key
    (RSA...) or hold another key type: such senders cannot be verified here.
    """
    raw = peer_id.to_bytes() if isinstance(peer_id, ID) else bytes(peer_id)
    if len(raw) > MAX_PEER_ID_BYTES:
        raise MessageRejected(RejectReason.MALFORMED, "peer ID too long")
    return _key_from_peer_id(raw)


def _check_shape(env: Envelope) -> None:
    if not env.id or len(env.id) > MAX_ID_BYTES:
        raise MessageRejected(RejectReason.MALFORMED, "id empty or too long")
    if len(env.type) > MAX_TYPE_BYTES:
        raise MessageRejected(RejectReason.MALFORMED, "type too long")
    if not env.sender or not env.recipient:
        raise MessageRejected(RejectReason.MALFORMED, "sender or recipient missing")
    if len(env.signature) != ED25519_SIGNATURE_BYTES:
        raise MessageRejected(RejectReason.MALFORMED, "signature missing or wrong length")


def verify_envelope(
    env: Envelope,
    *,
    authenticated_peer: ID | bytes | None,
    local_peer: ID | bytes | None = None,
) -> None:
    """Accept ``env`` or raise :class:`MessageRejected`.

    ``authenticated_peer`` is the peer the transport proved it talks to (the
    libp2p stream's remote peer); ``None`` only for messages that did not come
    over a direct stream (e.g. read back from storage). ``local_peer``, when
    given, must be the recipient: a message for someone else is not ours to
    accept, even if validly signed.
    """
    _check_shape(env)
    if authenticated_peer is not None:
        peer = authenticated_peer.to_bytes() if isinstance(authenticated_peer, ID) else bytes(authenticated_peer)
        if env.sender != peer:
            raise MessageRejected(RejectReason.FORGED, "sender is not the authenticated stream peer")
    if local_peer is not None:
        local = local_peer.to_bytes() if isinstance(local_peer, ID) else bytes(local_peer)
        if env.recipient != local:
            raise MessageRejected(RejectReason.FORGED, "message is addressed to another peer")
    key = public_key_of(env.sender)
    if not key.verify(signing_bytes(env), env.signature):
        raise MessageRejected(RejectReason.TAMPERED, "signature does not verify")
