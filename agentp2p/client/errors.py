"""What the client raises. All derive from :class:`ClientError` (an AgentP2PError)."""

from __future__ import annotations

from agentp2p.errors import AgentP2PError


class ClientError(AgentP2PError):
    """Talking to the daemon failed."""


class DaemonNotRunning(ClientError):
    """No daemon answers at the API address (or none is recorded)."""


class TokenError(ClientError):
    """The API token is missing, unreadable, or the daemon refused it."""


class ApiError(ClientError):
    """The daemon answered with an error status.

    ``code`` is the machine-readable error (``bad_request``, ``not_found``,
    ``payload_too_large``, ``peer_unreachable``...); ``message`` says why.
    ``stored``, for a send's ``504 delivery_timeout``: True when the peer's
    durable inbox has the message (it is not lost: do not send it again),
    False when it never said so; None for other errors (and daemons from
    before receipts).
    """

    def __init__(self, status: int, code: str, message: str, *, stored: bool | None = None) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.stored = stored


class NotFound(ApiError):
    """404: no such peer, value, route..."""


class Forbidden(ApiError):
    """403: the daemon's own policy refuses this (a peer on its deny list, or
    banned for misbehaving); retrying will not help until the policy changes."""


class StreamClosed(ClientError):
    """The daemon ended an event stream (it stopped, or dropped this client)."""
