"""Message signatures for the gossipsub adapter: checking others' (VerifySignature), making ours.

The router core asks the adapter to verify each new message once, after the
seen-cache check (events.VerifySignature); this module answers. The author's
key is ``message.key`` when set, else the key inlined in ``message.from_``
(an identity-multihash peer ID: Ed25519, and any key type whose marshalled
form is at most 42 bytes). Either way the key must *be* the ``from`` peer ID's
key — ``from`` is the identity multihash of the marshalled key, or its
SHA2-256 multihash (libp2p peer-ids spec) — or the message is rejected: a
valid signature by some other key proves nothing about the claimed author.

Cost: deserialising a key is far more expensive than a signature check, so
verifiers are cached per (from, key) in a bounded LRU (authors are few, their
messages many). For Ed25519 — every agentp2p node, and go's default — the
check is one libsodium call (``crypto_sign_open``), skipping py-libp2p's
wrapper objects; other key types go through py-libp2p's own
``deserialize_public_key`` and ``verify``. Nothing here raises for any input:
every failure is "not valid".
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from libp2p.crypto.keys import KeyType
from libp2p.crypto.serialization import deserialize_public_key
from nacl.bindings import crypto_sign_open

from .rpc import Message

__all__ = ["SignatureVerifier", "VerifierStats", "make_signer", "peer_id_key"]

Verify = Callable[[bytes, bytes], bool]

_IDENTITY = 0x00
_SHA2_256 = 0x12


def _read_varint(b: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(b) or shift > 35:
            raise ValueError("bad varint")
        c = b[pos]
        pos += 1
        n |= (c & 0x7F) << shift
        if not c & 0x80:
            return n, pos
        shift += 7


def _multihash(peer_id: bytes) -> tuple[int, bytes]:
    """(hash code, digest) of a binary peer ID; ValueError if it is not a multihash."""
    code, pos = _read_varint(peer_id, 0)
    length, pos = _read_varint(peer_id, pos)
    digest = peer_id[pos:]
    if len(digest) != length:
        raise ValueError("multihash length mismatch")
    return code, digest


def peer_id_key(peer_id: bytes) -> bytes | None:
    """The marshalled public key inlined in ``peer_id`` (identity multihash), else None."""
    try:
        code, digest = _multihash(peer_id)
    except ValueError:
        return None
    return digest if code == _IDENTITY else None


def _key_matches(peer_id: bytes, key: bytes) -> bool:
    """Whether ``peer_id`` is the peer ID of the marshalled public key ``key``."""
    try:
        code, digest = _multihash(peer_id)
    except ValueError:
        return False
    if code == _IDENTITY:
        return digest == key
    if code == _SHA2_256:
        return hashlib.sha256(key).digest() == digest
    return False


def _ed25519(raw: bytes) -> Verify | None:
    if len(raw) != 32:
        return None

    def verify(payload: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            crypto_sign_open(signature + payload, raw)
        except Exception:  # noqa: BLE001 — BadSignatureError, or libsodium refusing the point
            return False
        return True

    return verify


def _generic(key: object) -> Verify:
    def verify(payload: bytes, signature: bytes) -> bool:
        try:
            return bool(key.verify(payload, signature))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 — malformed signatures raise in some key types
            return False

    return verify


def _load(from_: bytes, key: bytes | None) -> Verify | None:
    """A verifier for the author ``from_`` (with ``key`` if the message carries one), or None."""
    if key is None:
        key = peer_id_key(from_)
        if key is None:
            return None  # a hashed peer ID and no key: nothing to verify with
    elif not _key_matches(from_, key):
        return None
    try:
        pub = deserialize_public_key(key)
    except Exception:  # noqa: BLE001 — garbage keys raise anything from protobuf to RSA parsing
        return None
    try:
        if pub.get_type() == KeyType.Ed25519:
            return _ed25519(pub.to_bytes())
    except Exception:  # noqa: BLE001
        return None
    return _generic(pub)


@dataclass(slots=True)
class VerifierStats:
    verified: int = 0
    failed: int = 0
    bad_keys: int = 0  # no usable key: unparsable, missing, or not the author's
    key_cache_misses: int = 0


class SignatureVerifier:
    """``verify(message, payload)`` for VerifySignature actions, with a bounded key cache."""

    def __init__(self, max_keys: int = 4096) -> None:
        self.max_keys = max_keys
        self.stats = VerifierStats()
        self._cache: OrderedDict[tuple[bytes, bytes | None], Verify | None] = OrderedDict()

    def verifier(self, from_: bytes, key: bytes | None) -> Verify | None:
        ck = (from_, key)
        cache = self._cache
        try:
            fn = cache[ck]
        except KeyError:
            self.stats.key_cache_misses += 1
            fn = _load(from_, key)
            cache[ck] = fn
            if len(cache) > self.max_keys:
                cache.popitem(last=False)
        return fn

    def verify(self, message: Message, payload: bytes) -> bool:
        sig, from_ = message.signature, message.from_
        if not sig or not from_:
            self.stats.failed += 1
            return False
        fn = self.verifier(from_, message.key)
        if fn is None:
            self.stats.bad_keys += 1
            self.stats.failed += 1
            return False
        if fn(payload, sig):
            self.stats.verified += 1
            return True
        self.stats.failed += 1
        return False


def make_signer(identity: object) -> tuple[Callable[[bytes], bytes], bytes | None]:
    """(``sign(payload) -> signature``, ``sign_key``) for GossipSubCore from a node identity.

    ``sign_key`` is our marshalled public key for the messages' ``key`` field,
    or None when our peer ID inlines it (Ed25519: always).
    """
    private = identity.private_key  # type: ignore[attr-defined]
    peer_id: bytes = identity.peer_id.to_bytes()  # type: ignore[attr-defined]
    sign_key = None if peer_id_key(peer_id) is not None else identity.public_key.serialize()  # type: ignore[attr-defined]
    impl = getattr(private, "impl", None)
    if private.get_type() == KeyType.Ed25519 and impl is not None and hasattr(impl, "sign"):
        signing_key = impl

        def sign(payload: bytes) -> bytes:
            return bytes(signing_key.sign(payload).signature)

        return sign, sign_key
    return private.sign, sign_key
