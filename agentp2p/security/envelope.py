"""libp2p signed envelopes (libp2p/specs RFC 0002), for any payload type.

Theory of operation
-------------------
An envelope carries a payload together with the public key of its author and
the author's signature. What is signed is not the payload alone but

    varint(len(domain))       || domain        (UTF-8)
    varint(len(payload_type)) || payload_type
    varint(len(payload))      || payload

(unsigned LEB128 varints). The *domain* is never sent: the verifier supplies
the domain it expects, so a signature made for one purpose (say, a libp2p
peer record, domain "libp2p-peer-record") can never be replayed as another
(our agent records, domain "agentp2p-agent-record"). The *payload type* is
sent and signed, so a reader knows how to decode the payload and an attacker
cannot relabel it.

Wire format: the spec's ``Envelope`` protobuf (public_key = 1 as a libp2p
``PublicKey`` message, payload_type = 2, payload = 3, signature = 5). We reuse
the copy of that message that py-libp2p ships (``libp2p.peer.pb.envelope_pb2``)
rather than define a second one; py-libp2p's own ``Envelope`` class is tied to
peer records, so the signing rules live here, generic over payload type.

Everything a remote peer can influence is decoded under one error type,
:class:`EnvelopeError`: malformed bytes, unknown key types, bad signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

from libp2p.crypto.keys import PrivateKey, PublicKey
from libp2p.crypto.serialization import key_type_to_public_key_deserializer
from libp2p.peer.pb import envelope_pb2
from libp2p.utils.varint import encode_uvarint

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "Envelope",
    "EnvelopeError",
    "EnvelopePayloadTypeError",
    "EnvelopeSignatureError",
    "EnvelopeTooLarge",
    "open_envelope",
    "seal",
    "signing_bytes",
]

#: Upper bound on an encoded envelope we are willing to parse. Agent records
#: with a few JSON Schemas fit easily; anything larger is refused unparsed.
MAX_ENVELOPE_BYTES = 64 * 1024


class EnvelopeError(ValueError):
    """The bytes are not a well-formed envelope validly signed for the domain."""


class EnvelopeTooLarge(EnvelopeError):
    """Refused before parsing: over :data:`MAX_ENVELOPE_BYTES`."""


class EnvelopePayloadTypeError(EnvelopeError):
    """Well-formed, but not the payload type the caller expects."""


class EnvelopeSignatureError(EnvelopeError):
    """The signature does not verify for the expected domain (or is malformed)."""


def signing_bytes(domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """Return the exact bytes an envelope's signature covers (RFC 0002)."""
    if not domain:
        # The spec requires a domain; an empty one would defeat separation.
        raise EnvelopeError("envelope domain must not be empty")
    out = bytearray()
    for field in (domain.encode("utf-8"), payload_type, payload):
        out += encode_uvarint(len(field))
        out += field
    return bytes(out)


@dataclass(frozen=True)
class Envelope:
    """A decoded envelope. Only :func:`seal` and :func:`open_envelope` make
    instances whose signature has been produced or checked."""

    public_key: PublicKey
    payload_type: bytes
    payload: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """Encode in the RFC 0002 protobuf wire format."""
        msg = envelope_pb2.Envelope(
            payload_type=self.payload_type,
            payload=self.payload,
            signature=self.signature,
        )
        msg.public_key.Type = self.public_key.get_type().value  # type: ignore[assignment]
        msg.public_key.Data = self.public_key.to_bytes()
        return msg.SerializeToString(deterministic=True)

    def verify(self, domain: str) -> None:
        """Raise :class:`EnvelopeError` unless the signature is valid for ``domain``."""
        unsigned = signing_bytes(domain, self.payload_type, self.payload)
        try:
            ok = self.public_key.verify(unsigned, self.signature)
        except Exception as exc:  # key backends raise on malformed signatures
            raise EnvelopeSignatureError(f"malformed signature: {exc}") from exc
        if not ok:
            raise EnvelopeSignatureError("invalid envelope signature")


def seal(domain: str, payload_type: bytes, payload: bytes, private_key: PrivateKey) -> Envelope:
    """Sign ``payload`` as ``payload_type`` for ``domain`` with ``private_key``."""
    if not payload_type:
        raise EnvelopeError("payload type must not be empty")
    signature = private_key.sign(signing_bytes(domain, payload_type, payload))
    return Envelope(private_key.get_public_key(), bytes(payload_type), bytes(payload), signature)


def _decode(data: bytes) -> Envelope:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeTooLarge(f"envelope too large ({len(data)} > {MAX_ENVELOPE_BYTES} bytes)")
    msg = envelope_pb2.Envelope()
    try:
        msg.ParseFromString(bytes(data))
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise EnvelopeError(f"malformed envelope: {exc}") from exc
    if not msg.HasField("public_key"):
        raise EnvelopeError("envelope has no public key")
    deserialize = key_type_to_public_key_deserializer.get(int(msg.public_key.Type))
    if deserialize is None:
        raise EnvelopeError(f"unsupported public key type {int(msg.public_key.Type)}")
    try:
        public_key = deserialize(msg.public_key.Data)
    except Exception as exc:  # each backend raises its own error type
        raise EnvelopeError(f"malformed public key: {exc}") from exc
    if not msg.payload_type:
        raise EnvelopeError("envelope has no payload type")
    return Envelope(public_key, msg.payload_type, msg.payload, msg.signature)


def open_envelope(data: bytes, domain: str, payload_type: bytes | None = None) -> Envelope:
    """Decode ``data`` and verify it was signed for ``domain``.

    If ``payload_type`` is given the envelope must carry exactly that type
    (checked before the signature, which is the costly part). Raises
    :class:`EnvelopeError` for anything else, never another exception.
    """
    env = _decode(data)
    if payload_type is not None and env.payload_type != payload_type:
        raise EnvelopePayloadTypeError(
            f"unexpected payload type {env.payload_type.hex()} (want {payload_type.hex()})"
        )
    env.verify(domain)
    return env
