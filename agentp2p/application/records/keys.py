"""Where agent records and capability announcements live in the DHT.

* Record key: ``/agentrec/<peer-id-base58>`` — a namespaced DHT value key, so
  py-libp2p's ``NamespacedValidator`` routes it to ``AgentRecordValidator``
  (namespace ``agentrec``). The key is stored as its UTF-8 bytes, like every
  namespaced key in py-libp2p's ``KadDHT.put_value``.
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
    "peer_id_from_record_key",
    "record_key",
]

NAMESPACE = "agentrec"
CAPABILITY_KEY_PREFIX = "agentp2p/cap/"

_CID_V1 = 0x01
_RAW_CODEC = 0x55
_SHA2_256 = 0x12  # multihash code; digest length 0x20 follows


def record_key(peer_id: ID) -> str:
    """The DHT value key for ``peer_id``'s record."""
    return f"/{NAMESPACE}/{peer_id.to_base58()}"


def peer_id_from_record_key(key: str) -> ID:
    """Inverse of :func:`record_key`; raises :class:`InvalidRecord` otherwise."""
    prefix = f"/{NAMESPACE}/"
    if not key.startswith(prefix):
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, f"not an agent record key: {key!r}")
    text = key[len(prefix):]
    try:
        peer_id = ID.from_base58(text)
    except Exception as exc:
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, f"bad peer ID in key {key!r}") from exc
    if not text or peer_id.to_base58() != text:  # reject non-canonical spellings
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, f"bad peer ID in key {key!r}")
    return peer_id


def capability_multihash(name: str) -> bytes:
    """sha2-256 multihash of ``"agentp2p/cap/" + name`` (the raw DHT key)."""
    digest = hashlib.sha256((CAPABILITY_KEY_PREFIX + name).encode("utf-8")).digest()
    return bytes([_SHA2_256, len(digest)]) + digest


def capability_cid(name: str) -> str:
    """The provider key string for capability ``name`` (CIDv1 raw, base32)."""
    cid = bytes([_CID_V1, _RAW_CODEC]) + capability_multihash(name)
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")
