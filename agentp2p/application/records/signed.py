"""Sealing agent records into signed envelopes and opening them again.

An agent record on the wire (DHT value, record protocol reply, announcement)
is always an RFC 0002 envelope (``agentp2p.security.envelope``) with

* domain       ``"agentp2p-agent-record"`` — signatures made for any other
  purpose (libp2p peer records, ...) never verify as agent records;
* payload type ``81 8c c0 01`` — the unsigned varint of multicodec 0x300601,
  a code from the multicodec private-use range (0x300000–0x3fffff);
* payload      the deterministic protobuf encoding of ``AgentRecord``.

:func:`open` is the single gate for untrusted bytes. It accepts a record only
if all of these hold, otherwise raises :class:`InvalidRecord`:

1. the envelope decodes, carries our payload type and is validly signed
   for our domain;
2. the record decodes and satisfies the field rules of ``model.py``;
3. the signing key is the record's ``public_key`` and the record's
   ``peer_id`` is derived from it (so a record signed by key B that claims
   peer A — a forgery — is refused), and, when the caller knows whose record
   it asked for, that peer is ``expected_peer_id``;
4. it is current: ``now_ms < expires_at_ms`` and ``issued_at_ms`` is not more
   than ``MAX_CLOCK_SKEW_MS`` in the future.

Replay of an *older* valid record is not detectable from the record alone;
``validator.select`` and ``RecordCache`` refuse to let one replace a newer one.
"""

from __future__ import annotations

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from agentp2p.security.envelope import (
    EnvelopeError,
    EnvelopePayloadTypeError,
    EnvelopeSignatureError,
    EnvelopeTooLarge,
    open_envelope,
)
from agentp2p.security.envelope import seal as seal_envelope

from .errors import InvalidRecord, Reason
from .model import AgentRecord

__all__ = ["MAX_CLOCK_SKEW_MS", "RECORD_DOMAIN", "RECORD_PAYLOAD_TYPE", "open", "seal"]

RECORD_DOMAIN = "agentp2p-agent-record"
RECORD_PAYLOAD_TYPE = bytes.fromhex("818cc001")  # uvarint(0x300601)
#: How far in the future ``issued_at_ms`` may lie (publisher clock ahead of ours).
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

_ENVELOPE_REASONS = {
    EnvelopeTooLarge: Reason.TOO_LARGE,
    EnvelopePayloadTypeError: Reason.PAYLOAD_TYPE,
    EnvelopeSignatureError: Reason.SIGNATURE,
}


def seal(record: AgentRecord, private_key: PrivateKey) -> bytes:
    """Sign ``record`` with ``private_key``; return the envelope bytes.

    Refuses (``InvalidRecord``) to sign a record whose public key is not the
    signer's, since nobody could verify it.
    """
    if private_key.get_public_key().serialize() != record.public_key.serialize():
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, "signing key is not the record's public key")
    payload = record.to_bytes()
    return seal_envelope(RECORD_DOMAIN, RECORD_PAYLOAD_TYPE, payload, private_key).to_bytes()


def open(  # noqa: A001 - mirrors seal/open; use as signed.open(...)
    data: bytes, *, now_ms: int, expected_peer_id: ID | None = None
) -> AgentRecord:
    """Verify envelope bytes and return the record; see the module docstring."""
    try:
        env = open_envelope(data, RECORD_DOMAIN, RECORD_PAYLOAD_TYPE)
    except EnvelopeError as exc:
        raise InvalidRecord(_ENVELOPE_REASONS.get(type(exc), Reason.MALFORMED), str(exc)) from exc
    record = AgentRecord.from_bytes(env.payload)
    if env.public_key.serialize() != record.public_key.serialize():
        raise InvalidRecord(Reason.PEER_ID_MISMATCH, "envelope signed by a key other than the record's")
    if expected_peer_id is not None and record.peer_id != expected_peer_id:
        raise InvalidRecord(
            Reason.PEER_ID_MISMATCH, f"record is for {record.peer_id}, expected {expected_peer_id}"
        )
    if record.is_expired(now_ms):
        raise InvalidRecord(Reason.EXPIRED, f"expired at {record.expires_at_ms} (now {now_ms})")
    if record.issued_at_ms > now_ms + MAX_CLOCK_SKEW_MS:
        raise InvalidRecord(Reason.NOT_YET_VALID, f"issued at {record.issued_at_ms} (now {now_ms})")
    return record
