"""Client for a running ``agentp2p daemon``'s control API (issue #7).

:class:`Client` is async and runs under asyncio or trio; :class:`SyncClient`
blocks, for scripts. Neither imports libp2p or trio. See ``docs/api.md``.
"""

from __future__ import annotations

from agentp2p.client.async_client import AsyncEventStream, AsyncSubscription, Client
from agentp2p.client.calls import Call, StreamEvent
from agentp2p.client.discovery import Endpoint, locate
from agentp2p.client.errors import ApiError, ClientError, DaemonNotRunning, NotFound, StreamClosed, TokenError
from agentp2p.client.sync_client import EventStream, Subscription, SyncClient
from agentp2p.client.types import Message, NodeInfo, Peer, PeerAddrs

__all__ = [
    "ApiError",
    "AsyncEventStream",
    "AsyncSubscription",
    "Call",
    "Client",
    "ClientError",
    "DaemonNotRunning",
    "Endpoint",
    "EventStream",
    "Message",
    "NodeInfo",
    "NotFound",
    "Peer",
    "PeerAddrs",
    "StreamClosed",
    "StreamEvent",
    "Subscription",
    "SyncClient",
    "TokenError",
    "locate",
]
