"""What the application receives: one incoming message, verified and opened."""

from __future__ import annotations

from dataclasses import dataclass

from libp2p.peer.id import ID

__all__ = ["IncomingMessage", "Receipt", "REPLY_OK", "REPLY_ERROR", "REQUEST"]

#: Reserved type prefixes for request/response. A request travels as
#: ``"~req:" + type``; its response as ``"~res:" + request id`` (handler
#: result) or ``"~err:" + request id`` (handler raised; payload = error text).
#: Application types must not start with "~".
REQUEST = "~req:"
REPLY_OK = "~res:"
REPLY_ERROR = "~err:"


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    id: str
    #: The sender, proven twice: the stream is Noise-authenticated as this peer
    #: and the envelope's Ed25519 signature verifies under its key.
    sender: ID
    type: str
    #: Plaintext (opened when the message was sealed).
    payload: bytes
    #: Sender's wall clock when it sent the message, Unix seconds.
    timestamp: float
    #: Was the payload end-to-end sealed to us (X25519 + AES-256-GCM)?
    sealed: bool
    #: Sent with ``request()``: a handler's return value goes back as the response.
    is_request: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the peer confirmed about a message we sent.

    ``status`` is the last receipt that came: ``"stored"`` (the peer's
    durable inbox has the message; it answers for it from now on, across its
    restarts) or ``"consumed"`` (the peer's application acknowledged it).
    ``stored_after`` and ``consumed_after`` are the seconds from ``send``
    being called to each receipt, None for one that has not come (a caller
    that waits for *stored* does not wait for consumption). A peer without a
    durable inbox sends only the consumed receipt, which stands for both.
    """

    id: str
    peer: ID
    status: str
    stored_after: float | None
    consumed_after: float | None
