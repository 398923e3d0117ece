"""Where agent records and capability announcements live in the DHT.

* Record key: ``/agentrec/<h>`` where ``h`` is the first 40 characters of
  the lowercase, unpadded base32 of sha2-256(peer ID bytes) — a namespaced
  DHT value key, so py-libp2p's ``NamespacedValidator`` routes it to
  ``AgentRecordValidator`` (namespace ``agentrec``). The key is stored as its
  UTF-8 bytes, like every namespaced key in py-libp2p's ``KadDHT.put_value``.
  It is exactly 50 bytes because py-libp2p peers refuse a FIND_NODE for a key
  longer than 50 bytes that is not a multihash: the readable
  ``/agentrec/<peer-id-base58>`` (62 bytes) could only ever reach the
  publisher's own routing table. The hash is not invertible, so the
  validator checks ``record_key(record.peer_id) == key`` instead (200 bits of
  sha2-256: a forged record would need a second preimage).
* Capability provider key: the CIDv1 (codec ``raw`` 0x55, multihash
  sha2-256) of the UTF-8 string ``"agentp2p/cap/<capability-name>"``, as
  base32 text (multibase prefix ``b``). ``KadDHT.provide(key)`` and
  ``find_providers(key)`` accept this string and use its multihash as the DHT
  key, the same shape IPFS content uses, so any Kademlia node can store the
  provider record. Capability names are matched exactly (case-sensitive).
"""

from __future__ import annotations

import base64
import hashlib

from libp2p.peer.id import ID

from .errors import InvalidRecord, Reason

__all__ = [
    "CAPABILITY_KEY_PREFIX",
    "NAMESPACE",
    "capability_cid",
    "capability_multihash",
    "record_key",
    "record_key_matches",
]

NAMESPACE = "agentrec"
CAPABILITY_KEY_PREFIX = "agentp2p/cap/"

_CID_V1 = 0x01
_RAW_CODEC = 0x55
_SHA2_256 = 0x12  # multihash code; digest length 0x20 follows


def record_key(peer_id: ID) -> str:
    """The DHT value key for ``peer_id``'s record (50 bytes; see module doc)."""
    digest = hashlib.sha256(peer_id.to_bytes()).digest()
    return f"/{NAMESPACE}/" + base64.b32encode(digest).decode("ascii").lower()[:40]


def record_key_matches(key: str, peer_id: ID) -> None:
    """Raise :class:`InvalidRecord` unless ``key`` is ``peer_id``'s record key."""
    if not key.startswith(f"/{NAMESPACE}/"):
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, f"not an agent record key: {key!r}")
    if key != record_key(peer_id):
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, f"record of {peer_id} stored under {key!r}")


def capability_multihash(name: str) -> bytes:
    """sha2-256 multihash of ``"agentp2p/cap/" + name`` (the raw DHT key)."""
    digest = hashlib.sha256((CAPABILITY_KEY_PREFIX + name).encode("utf-8")).digest()
    return bytes([_SHA2_256, len(digest)]) + digest


def capability_cid(name: str) -> str:
    """The provider key string for capability ``name`` (CIDv1 raw, base32)."""
    cid = bytes([_CID_V1, _RAW_CODEC]) + capability_multihash(name)
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")
