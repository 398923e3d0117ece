"""The one error type for records that fail to decode, verify or validate.

Whatever a remote peer sends us — garbage bytes, a forged signature, a stale
or oversized record — the records package reports it as
:class:`InvalidRecord`, with a machine-readable :class:`Reason` so callers can
count and log rejections without parsing messages.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    MALFORMED = "malformed"  # not a decodable envelope/record
    TOO_LARGE = "too_large"  # over a size limit
    FIELD = "field"  # a field breaks a rule (length, JSON, duplicate, ...)
    SIGNATURE = "signature"  # signature invalid (includes wrong domain)
    PAYLOAD_TYPE = "payload_type"  # envelope is not an agent record
    PEER_ID_MISMATCH = "peer_id_mismatch"  # peer ID / record key / signer disagree
    EXPIRED = "expired"  # now >= expires_at_ms
    NOT_YET_VALID = "not_yet_valid"  # issued too far in the future
    STALE = "stale"  # older than what we already hold


class InvalidRecord(ValueError):
    """An agent record (or its envelope) was rejected."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
