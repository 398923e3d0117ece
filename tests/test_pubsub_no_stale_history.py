"""A new subscriber gets no stale history.

Issue #11: py-libp2p's adaptive gossip stretched the heartbeat from 1 s to
30 s after ~30 s of uptime; its message cache then spanned ~90 s and a late
subscriber was sent tens of seconds of old messages (seen from a js-libp2p
peer). That router is gone; the test of its health re-rating went with it.
What stays pinned: our heartbeat is the configured one, and a subscriber
that joins after a message aged out of the gossip window never gets it.
Nothing is replayed on subscribe in any case: only message *IDs* of the
last few heartbeats are gossiped (IHAVE), as in every gossipsub.
"""

from __future__ import annotations

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


async def _heartbeats(node: Node, n: int) -> None:
    start = node.pubsub.stats.heartbeats
    await wait_until(lambda: node.pubsub.stats.heartbeats >= start + n, timeout=10 * n, what=f"{n} heartbeats")


async def test_heartbeat_is_the_configured_one() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        await b.connect(a.addrs[0])
        async with a.subscribe("t"), b.subscribe("t"):
            await wait_until(lambda: b.peer_id in a.topic_peers("t"), what="b's subscription at a")
            configured = a.config.pubsub.heartbeat_interval
            await _heartbeats(a, 1)
            t0, n0 = trio.current_time(), a.pubsub.stats.heartbeats
            await trio.sleep(4 * configured)
            beats = a.pubsub.stats.heartbeats - n0
            elapsed = trio.current_time() - t0
            assert abs(beats - elapsed / configured) <= 1.5, (beats, elapsed)


async def test_late_subscriber_does_not_get_messages_published_long_before() -> None:
    # As seen from a js-libp2p peer: it connected and subscribed 22 s after
    # the messages were published, and was sent all of them.
    async with Node(local_config()) as a, Node(local_config()) as b:
        async with a.subscribe("news"):
            await a.publish("news", b"old")
            core = a.pubsub.router.core
            # "Long before": the message has left the message cache (mcache_len
            # heartbeats), so it can be neither gossiped nor fetched.
            await wait_until(lambda: core.sizes()["mcache"] == 0, timeout=30, what="'old' to age out")
            await b.connect(a.addrs[0])
            async with b.subscribe("news") as sub:
                await wait_until(lambda: b.peer_id in a.topic_peers("news"), what="b's subscription at a")
                await wait_until(lambda: a.peer_id in b.pubsub.mesh_peers("news"), what="mesh")
                await a.publish("news", b"new")
                with trio.fail_after(10):
                    first = await sub.receive()
                assert first.data == b"new"
                await trio.sleep(2 * a.config.pubsub.heartbeat_interval)  # a gossip round or two
                assert sub.pending() == 0
