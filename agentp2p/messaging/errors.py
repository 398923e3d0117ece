"""What reliable messaging raises to its callers.

All derive from :class:`agentp2p.errors.AgentP2PError`, so the CLI and
applications can catch every deliberate agentp2p failure at once.
"""

from __future__ import annotations

from agentp2p.errors import AgentP2PError

__all__ = ["DeliveryError", "DeliveryTimeout", "MessagingError", "RemoteHandlerError", "RequestTimeout"]


class MessagingError(AgentP2PError):
    """Base class of messaging failures."""


class DeliveryError(MessagingError):
    """A message could not be delivered (bad recipient, too large, node stopping...)."""


class DeliveryTimeout(DeliveryError):
    """The peer did not acknowledge the message before the caller's deadline.

    The message may still have reached the peer (its acknowledgement may be
    what was lost); it will not be retransmitted any more, and the peer is
    told to stop waiting for it, so later messages are not held up.
    """


class RequestTimeout(DeliveryTimeout):
    """A request was delivered (or not) but no response arrived before the deadline."""


class RemoteHandlerError(MessagingError):
    """The peer's handler for a request raised; carries the peer's error text."""
