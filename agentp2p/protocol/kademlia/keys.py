"""The Kademlia keyspace: sha256 of a key's bytes, XOR distance, prefixes.

Every key — a peer ID, a record key, a provider key — is placed at
``sha256(bytes)`` (kad-dht/README.md "Distance"), so an attacker cannot pick
where its peer ID lands without grinding hashes. Distances are Python ints
(256-bit XOR), cheap to compare and sort.
"""

from __future__ import annotations

import hashlib
import random
from typing import Final

KEY_BITS: Final = 256
#: A peer ID is a multihash; sha2-256 (0x12) of 32 bytes (0x20) is a valid one
#: for go and rust alike, so random refresh targets are parseable peer IDs.
_SHA256_MULTIHASH: Final = b"\x12\x20"


def kad_key(raw: bytes) -> bytes:
    """Where ``raw`` (a peer ID or record/provider key) sits in the keyspace."""
    return hashlib.sha256(raw).digest()


def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def common_prefix_len(a: bytes, b: bytes) -> int:
    """Leading bits shared by two keys (256 when equal); the bucket index."""
    return KEY_BITS - distance(a, b).bit_length()


def random_peer_id_in_bucket(local: bytes, cpl: int, rng: random.Random, max_tries: int = 1 << 18) -> bytes:
    """A peer-ID-shaped preimage whose kad_key shares exactly ``cpl`` bits with
    ``local`` (a refresh target for that bucket). A hash has no inverse, so we
    grind: 2**(cpl+1) tries on average, which is why refresh stops at a
    modest cpl (KademliaConfig.max_refresh_cpl). Raises ValueError if
    ``max_tries`` runs out."""
    for _ in range(max_tries):
        cand = _SHA256_MULTIHASH + rng.getrandbits(256).to_bytes(32, "big")
        if common_prefix_len(local, kad_key(cand)) == cpl:
            return cand
    raise ValueError(f"no preimage with cpl {cpl} in {max_tries} tries")
