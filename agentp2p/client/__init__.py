"""Client for a running ``agentp2p daemon``'s control API (issue #7).

:class:`Client` is async and runs under asyncio or trio; :class:`SyncClient`
blocks, for scripts. Neither imports libp2p or trio. See ``docs/api.md``.

Names resolve lazily so that the CLI, which only needs
:mod:`agentp2p.client.discovery` to build its parser, does not pay for
importing httpx on ``--help``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Client": "async_client",
    "AsyncEventStream": "async_client",
    "AsyncSubscription": "async_client",
    "AsyncStreamOf": "async_client",
    "AsyncInbox": "async_client",
    "SyncClient": "sync_client",
    "EventStream": "sync_client",
    "Subscription": "sync_client",
    "StreamOf": "sync_client",
    "Inbox": "sync_client",
    "Call": "calls",
    "StreamEvent": "calls",
    "Endpoint": "discovery",
    "locate": "discovery",
    "ApiError": "errors",
    "ClientError": "errors",
    "DaemonNotRunning": "errors",
    "Forbidden": "errors",
    "NotFound": "errors",
    "StreamClosed": "errors",
    "TokenError": "errors",
    "Agent": "types",
    "BannedPeer": "types",
    "DirectMessage": "types",
    "Member": "types",
    "MemberEvent": "types",
    "Message": "types",
    "Record": "types",
    "SendReceipt": "types",
    "NodeInfo": "types",
    "Peer": "types",
    "PeerAddrs": "types",
    "TopicPeers": "types",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from agentp2p.client.async_client import AsyncEventStream, AsyncInbox, AsyncStreamOf, AsyncSubscription, Client
    from agentp2p.client.calls import Call, StreamEvent
    from agentp2p.client.discovery import Endpoint, locate
    from agentp2p.client.errors import ApiError, ClientError, DaemonNotRunning, Forbidden, NotFound, StreamClosed, TokenError
    from agentp2p.client.sync_client import EventStream, Inbox, StreamOf, Subscription, SyncClient
    from agentp2p.client.types import Agent, BannedPeer, DirectMessage, Member, MemberEvent, Message, NodeInfo, Peer, PeerAddrs, Record, SendReceipt, TopicPeers


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentp2p.client' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agentp2p.client.{module}"), name)
