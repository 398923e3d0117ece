"""What reliable messaging raises to its callers.

All derive from :class:`agentp2p.errors.AgentP2PError`, so the CLI and
applications can catch every deliberate agentp2p failure at once.
"""

from __future__ import annotations

from agentp2p.errors import AgentP2PError, Forbidden

__all__ = [
    "DeliveryError", "DeliveryTimeout", "InboxFull", "MessageForbidden", "MessagingError", "RemoteHandlerError",
    "RequestTimeout",
]


class MessagingError(AgentP2PError):
    """Base class of messaging failures."""


class DeliveryError(MessagingError):
    """A message could not be delivered (bad recipient, too large, node stopping...)."""


class InboxFull(DeliveryError):
    """The peer refused the message: its durable inbox is full (its agent is
    not reading, or reads more slowly than messages arrive).

    Nothing of this message was stored at the peer; the messages it stored
    before are kept. Send it again later, once the agent there has read.
    The peer lists exactly the messages it refused, so a later message that
    found room meanwhile is not failed with this one; and a message of
    which another copy was still on its way (a retransmission) is not
    failed at all — it is retried until stored or its deadline.
    """


class MessageForbidden(Forbidden, DeliveryError):
    """The peer's authorization policy refuses this message's type (or, for a
    request, the capability called) from us. It was not delivered and will
    not be; sending it again will not help until that policy changes."""


class DeliveryTimeout(DeliveryError):
    """The peer did not acknowledge the message before the caller's deadline.

    The message may still have reached the peer (its acknowledgement may be
    what was lost); it will not be retransmitted any more, and the peer is
    told to stop waiting for it, so later messages are not held up.

    ``stored`` is True when the peer did store the message (receipt
    *stored*) and only its consumption did not come in time: then it is
    not lost, the peer delivers it when its agent reads.
    """

    stored: bool = False


class RequestTimeout(DeliveryTimeout):
    """A request was delivered (or not) but no response arrived before the deadline."""


class RemoteHandlerError(MessagingError):
    """The peer's handler for a request raised; carries the peer's error text."""
