"""The Kademlia keyspace: sha256 of a key's bytes, XOR distance, prefixes.

Every key — a peer ID, a record key, a provider key — is placed at
``sha256(bytes)`` (kad-dht/README.md "Distance"), so an attacker cannot pick
where its peer ID lands without grinding hashes. Distances are Python ints
(256-bit XOR), cheap to compare and sort.
"""

from __future__ import annotations

import hashlib
import random
from array import array
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


#: Refresh targets for cpl < 16 come from a table: 16-bit key prefix -> the
#: first counter whose candidate preimage hashes to that prefix (-1: not yet
#: seen). It fills lazily, by scanning counters in order, so its content does
#: not depend on which prefixes were asked for first (the simulator's runs
#: stay reproducible), and a process pays the grinding once, not per refresh
#: (go-libp2p-kbucket ships a precomputed table for the same reason).
_PREFIX_BITS: Final = 16
_prefix_seed = array("l", [-1]) * (1 << _PREFIX_BITS)
_scanned = 0
_missing = 1 << _PREFIX_BITS


def _candidate(i: int) -> bytes:
    return _SHA256_MULTIHASH + i.to_bytes(32, "big")


def _seed_for_prefix(prefix: int) -> int:
    """The first counter whose candidate's key starts with ``prefix`` (16 bits)."""
    global _scanned, _missing
    table = _prefix_seed
    i = _scanned
    while table[prefix] < 0:
        h = hashlib.sha256(_candidate(i)).digest()
        slot = (h[0] << 8) | h[1]
        if table[slot] < 0:
            table[slot] = i
            _missing -= 1
        i += 1
    _scanned = i
    return table[prefix]


def random_peer_id_in_bucket(local: bytes, cpl: int, rng: random.Random, max_tries: int = 1 << 18) -> bytes:
    """A peer-ID-shaped preimage whose kad_key shares exactly ``cpl`` bits with
    ``local`` (a refresh target for that bucket). A hash has no inverse: for
    cpl < 16 the key's first cpl bits are ours, the next one flipped and the
    rest of 16 random, and the preimage is looked up in the prefix table
    (filled once per process, ~2^16 hashes on average for a deep bucket's
    first use); deeper buckets are ground for: 2**(cpl+1) tries on average,
    which is why refresh stops at a modest cpl
    (KademliaConfig.max_refresh_cpl). Raises ValueError if ``max_tries`` runs
    out (only for cpl >= 16)."""
    if cpl < _PREFIX_BITS:
        mine = (local[0] << 8) | local[1]
        fixed = _PREFIX_BITS - cpl - 1  # bits after the flipped one: random
        want = ((mine >> fixed) ^ 1) << fixed | (rng.getrandbits(fixed) if fixed else 0)
        return _candidate(_seed_for_prefix(want))
    for _ in range(max_tries):
        cand = _SHA256_MULTIHASH + rng.getrandbits(256).to_bytes(32, "big")
        if common_prefix_len(local, kad_key(cand)) == cpl:
            return cand
    raise ValueError(f"no preimage with cpl {cpl} in {max_tries} tries")
