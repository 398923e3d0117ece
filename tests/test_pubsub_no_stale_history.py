"""A new subscriber gets no stale history (issue #11: py-libp2p's adaptive
gossip stretched the heartbeat from 1 s to 30 s after ~30 s of uptime; the
message cache then spanned ~90 s and a late subscriber was sent tens of
seconds of old messages)."""

from __future__ import annotations

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def _rate_health_now(node: Node) -> None:
    """Make the router's next heartbeat re-rate network health, as it does by
    itself every 30 s of wall-clock uptime (``last_health_update`` is the
    library's own gate), instead of waiting 30 s."""
    node.pubsub.router.last_health_update = 0


async def _heartbeats(node: Node, n: int) -> None:
    """Wait for ``n`` heartbeats of ``node``'s router (counted by its message
    cache shifting)."""
    mcache = node.pubsub.router.mcache
    shift = mcache.shift
    count = 0

    def counted() -> None:
        nonlocal count
        count += 1
        shift()

    mcache.shift = counted  # type: ignore[method-assign]
    try:
        await wait_until(lambda: count >= n, timeout=10, what=f"{n} heartbeats")
    finally:
        mcache.shift = shift  # type: ignore[method-assign]


async def test_heartbeat_stays_configured_after_health_is_rated() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        await b.connect(a.addrs[0])
        async with a.subscribe("t"), b.subscribe("t"):
            await wait_until(lambda: b.peer_id in a.topic_peers("t"), what="b's subscription at a")
            configured = a.config.pubsub.heartbeat_interval
            _rate_health_now(a)
            await _heartbeats(a, 2)
            assert a.pubsub.router.heartbeat_interval == configured


async def test_late_subscriber_does_not_get_messages_published_long_before() -> None:
    # As seen from a js-libp2p peer: it connected and subscribed 22 s after
    # the messages were published, and was sent all of them.
    async with Node(local_config()) as a, Node(local_config()) as b:
        async with a.subscribe("news"):
            _rate_health_now(a)
            await _heartbeats(a, 1)
            await a.publish("news", b"old")
            router = a.pubsub.router
            # "Long before": the message has aged out of the gossip window
            # (a few heartbeats; with a 30 s heartbeat this takes ~90 s).
            await wait_until(lambda: not router.mcache.window("news"), timeout=15, what="'old' to age out")
            await b.connect(a.addrs[0])
            async with b.subscribe("news") as sub:
                await wait_until(lambda: b.peer_id in a.topic_peers("news"), what="b's subscription at a")
                await wait_until(lambda: a.peer_id in b.pubsub.router.mesh.get("news", set()), what="mesh")
                await a.publish("news", b"new")
                with trio.fail_after(10):
                    first = await sub.receive()
                assert first.data == b"new"
