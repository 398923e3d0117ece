"""Group membership certificates: issue one, and check one a peer presents.

A group (``ops``, ``billing-agents``...) is defined in a node's policy by the
peer ID of its *issuer*. The issuer — any identity key, typically one kept
offline by whoever runs the network — signs a short-lived certificate for
each member's peer ID (``agentp2p cert issue``). The member's daemon holds
its certificates and presents them to peers that ask
(:mod:`agentp2p.protocol.membership`); a peer's policy can then name the group
instead of every member.

The format is ``proto/membership.proto``: a ``MembershipCertificate`` inside
a libp2p signed envelope (RFC 0002) for the domain below, so the signature
cannot be replayed as any other signed object of ours, and the envelope's
key *is* the issuer. :func:`open_certificate` checks everything that does
not depend on who asks (encoding, limits, signature, validity window);
whether the subject is the presenting peer and whether the issuer is the
one a policy names are the caller's checks (:mod:`.membership`), because
only the caller knows the peer and the policy.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from agentp2p.pb.membership_pb2 import MembershipCertificate, MembershipPresentation
from agentp2p.security.envelope import EnvelopeError, open_envelope, seal

__all__ = [
    "CERTIFICATE_DOMAIN",
    "CERTIFICATE_PAYLOAD_TYPE",
    "MAX_CERTIFICATE_BYTES",
    "MAX_CERTIFICATES",
    "MAX_LIFETIME_MS",
    "Certificate",
    "CertificateError",
    "CertificateExpired",
    "decode_certificate_text",
    "encode_certificate_text",
    "check_group_name",
    "decode_presentation",
    "encode_presentation",
    "issue",
    "open_certificate",
]

CERTIFICATE_DOMAIN = "agentp2p-membership-certificate"
CERTIFICATE_PAYLOAD_TYPE = bytes.fromhex("828cc001")  # uvarint(0x300602), multicodec private use
#: One encoded certificate (envelope included); a real one is ~200 bytes.
MAX_CERTIFICATE_BYTES = 2048
#: Certificates in one presentation (and held for one peer).
MAX_CERTIFICATES = 16
#: Longest validity window accepted: certificates are meant to be short-lived.
MAX_LIFETIME_MS = 366 * 24 * 3600 * 1000
#: Tolerated clock difference between issuer, member and checker.
CLOCK_SKEW_MS = 5 * 60 * 1000

_GROUP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CertificateError(ValueError):
    """A certificate that cannot be accepted; the message says why."""


class CertificateExpired(CertificateError):
    """Well-formed and validly signed, but not valid at this time (expired or not yet valid)."""


def check_group_name(name: str) -> str:
    if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
        raise CertificateError(f"invalid group name {name!r}: 1-64 characters of A-Z a-z 0-9 . _ -")
    return name


@dataclass(frozen=True)
class Certificate:
    """A certificate whose encoding, signature and validity window were checked."""

    group: str
    subject: ID
    issuer: ID
    not_before_ms: int
    not_after_ms: int
    raw: bytes  # the signed envelope, as presented (for presenting it on)

    def valid_at(self, now_ms: int) -> bool:
        return self.not_before_ms - CLOCK_SKEW_MS <= now_ms <= self.not_after_ms + CLOCK_SKEW_MS

    def describe(self) -> dict[str, object]:
        return {
            "group": self.group,
            "subject": str(self.subject),
            "issuer": str(self.issuer),
            "not_before_ms": self.not_before_ms,
            "not_after_ms": self.not_after_ms,
        }


def issue(
    issuer_key: PrivateKey, group: str, subject: ID, *, not_before_ms: int, not_after_ms: int
) -> bytes:
    """A certificate, signed with ``issuer_key``, that ``subject`` is in ``group``."""
    check_group_name(group)
    if not 0 <= not_before_ms < not_after_ms:
        raise CertificateError("the validity window is empty")
    if not_after_ms - not_before_ms > MAX_LIFETIME_MS:
        raise CertificateError(f"a validity window of more than {MAX_LIFETIME_MS // 86_400_000} days")
    body = MembershipCertificate(
        group=group, subject=subject.to_bytes(), not_before_ms=not_before_ms, not_after_ms=not_after_ms
    ).SerializeToString(deterministic=True)
    return seal(CERTIFICATE_DOMAIN, CERTIFICATE_PAYLOAD_TYPE, body, issuer_key).to_bytes()


def open_certificate(data: bytes, now_ms: int) -> Certificate:
    """Decode and check ``data``; raise :class:`CertificateError` with the reason.

    Checked here: size, envelope and payload type, signature, fields, and
    that ``now_ms`` lies in the validity window (give or take the clock skew).
    """
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(f"certificate too large ({len(data)} > {MAX_CERTIFICATE_BYTES} bytes)")
    try:
        env = open_envelope(data, CERTIFICATE_DOMAIN, CERTIFICATE_PAYLOAD_TYPE)
    except EnvelopeError as exc:
        raise CertificateError(f"not a valid certificate: {exc}") from None
    body = MembershipCertificate()
    try:
        body.ParseFromString(env.payload)
        subject = ID(body.subject)
        subject.to_base58()  # a malformed multihash fails here, not later
    except (DecodeError, ValueError, TypeError) as exc:
        raise CertificateError(f"malformed certificate: {exc}") from None
    check_group_name(body.group)
    if not body.subject:
        raise CertificateError("certificate names no subject")
    if body.not_after_ms <= body.not_before_ms:
        raise CertificateError("certificate has an empty validity window")
    if body.not_after_ms - body.not_before_ms > MAX_LIFETIME_MS:
        raise CertificateError("certificate's validity window is too long")
    cert = Certificate(
        group=body.group,
        subject=subject,
        issuer=ID.from_pubkey(env.public_key),
        not_before_ms=body.not_before_ms,
        not_after_ms=body.not_after_ms,
        raw=bytes(data),
    )
    if now_ms > cert.not_after_ms + CLOCK_SKEW_MS:
        raise CertificateExpired(f"certificate for group {cert.group!r} expired")
    if now_ms < cert.not_before_ms - CLOCK_SKEW_MS:
        raise CertificateExpired(f"certificate for group {cert.group!r} is not valid yet")
    return cert


def encode_certificate_text(raw: bytes) -> str:
    """The text form of a certificate (files, the control API): base64, one line."""
    return base64.b64encode(raw).decode("ascii")


def decode_certificate_text(text: str | bytes) -> bytes:
    """A certificate's bytes from its text form (surrounding whitespace allowed)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise CertificateError("not a certificate: expected base64 text (as 'agentp2p cert issue' writes)") from None
    if not raw or len(raw) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(f"not a certificate: {len(raw)} bytes")
    return raw


def encode_presentation(certs: list[bytes]) -> bytes:
    return MembershipPresentation(certificates=certs[:MAX_CERTIFICATES]).SerializeToString()


def decode_presentation(data: bytes) -> list[bytes]:
    """The certificates of a presentation (unchecked); bounded in count and size."""
    msg = MembershipPresentation()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise CertificateError(f"malformed presentation: {exc}") from None
    if len(msg.certificates) > MAX_CERTIFICATES:
        raise CertificateError(f"{len(msg.certificates)} certificates presented (at most {MAX_CERTIFICATES})")
    return [bytes(c) for c in msg.certificates]
