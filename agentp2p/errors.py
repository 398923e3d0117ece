"""The exceptions agentp2p raises to its users.

Every error a user can cause by configuration or input derives from
:class:`AgentP2PError`, so the CLI can turn any of them into one clear line
instead of a traceback.
"""

from __future__ import annotations


class AgentP2PError(Exception):
    """Base class of every error agentp2p raises on purpose."""


class ConfigError(AgentP2PError):
    """A configuration value, file or flag is invalid."""


class IdentityError(AgentP2PError):
    """The identity key file is missing, corrupt, of the wrong type or unsafe."""


class AddressError(ConfigError):
    """A multiaddr could not be parsed or is not usable for what was asked."""


class ListenError(AgentP2PError):
    """The node could not listen on an address (port in use, permission...)."""


class DialError(AgentP2PError):
    """A peer could not be reached."""


class DialTimeout(DialError):
    """A dial or stream open ran out of its time (the peer may be slow, not
    gone): counted apart from refusals by those who retry (SWIM's transport)."""


class Forbidden(AgentP2PError):
    """A policy forbids the action: this node's (deny or allow list, penalty
    box, authorization rules) or the peer's (its rules refused our message).
    Not a failure to retry: it stands until the policy changes (the API
    answers 403 ``forbidden``)."""


# Forbidden first: the API maps an error by the first class of its MRO that
# has a status, and a refusal must answer 403, not DialError's 502.
class PeerRefused(Forbidden, DialError):
    """This node's own policy forbids the peer: it is on the deny list, or
    banned for misbehaving. Not a network failure: retrying will not help
    until the policy changes (the API answers 403 ``forbidden``)."""


class PubSubError(AgentP2PError):
    """A publish could not be delivered to the local gossipsub router."""


class NotRunningError(AgentP2PError):
    """The node was used outside of its ``async with`` block."""


class IdentityInUseError(IdentityError):
    """Another running node holds the lock on this identity file."""
