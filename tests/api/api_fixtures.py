"""Shared helpers for the control API tests: in-process nodes serving the API.

Daemon subprocesses are :class:`agentp2p.testing.DaemonProcess`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from agentp2p.application.api import ApiLimits, ApiService
from agentp2p.client import Client
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


@dataclass
class ApiNode:
    node: Node
    api: ApiService
    client: Client


@contextlib.asynccontextmanager
async def api_node(limits: ApiLimits | None = None, services: tuple[Any, ...] = (), **config: Any) -> AsyncIterator[ApiNode]:
    """A node serving the API on 127.0.0.1 (any port), and an async client for it."""
    api = ApiService("127.0.0.1:0", limits=limits)
    async with Node(local_config(**config), services=[api, *services]) as node:
        with trio.fail_after(10):
            await api.ready.wait()
        async with Client(api.base_url.removeprefix("http://"), token=api.token) as client:
            yield ApiNode(node, api, client)


async def connected_pair(a: ApiNode, b: ApiNode, topic: str | None = None) -> None:
    """Connect a to b; with ``topic``, wait until each sees the other subscribed to it."""
    await a.node.connect(b.node.addrs[0])
    if topic is not None:
        await wait_until(lambda: b.node.peer_id in a.node.topic_peers(topic), what="a sees b's subscription")
