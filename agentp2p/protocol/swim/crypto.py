"""Ed25519 signing and verification of SWIM self-updates with libp2p keys.

The glue between the pure core (which takes ``sign``/``verify`` functions,
see signature.py) and the node's identity: a member signs with its libp2p
private key; a verifier extracts the public key from the peer ID (Ed25519
peer IDs are an identity multihash of the key, so no key exchange is needed).
Peer IDs that do not inline an Ed25519 key cannot sign: their updates simply
never verify.
"""

from __future__ import annotations

from typing import Any

from agentp2p.security.rejections import MessageRejected
from agentp2p.security.signing import public_key_of

from .member import PeerId
from .signature import Signer


def ed25519_signer(private_key: Any) -> Signer:
    """``sign(data)`` with a libp2p private key (the node's identity key)."""
    return private_key.sign  # type: ignore[no-any-return]


def ed25519_verify(peer_id: PeerId, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` over ``data`` verifies under the key inlined in ``peer_id``."""
    try:
        key = public_key_of(peer_id)
    except MessageRejected:
        return False
    try:
        return bool(key.verify(data, signature))
    except Exception:  # noqa: BLE001 - a malformed signature is just invalid
        return False
